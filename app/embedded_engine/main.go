// Command ferretdb is Quarry's embedded database engine: FerretDB 1.24 with its
// SQLite backend, built from the embeddable package so that no generated
// version file is needed (a plain `go install` of cmd/ferretdb panics at start).
//
// It listens on one loopback TCP address, keeps its data in -data-dir, stops
// cleanly on SIGINT/SIGTERM and, with -watch-stdin, also when its standard
// input reaches EOF: the Python server holds the write end of that pipe, so the
// engine dies with the server even when the server is killed with SIGKILL and
// never gets the chance to stop it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/build/version"
	"github.com/FerretDB/FerretDB/ferretdb"
)

// engineVersion is the FerretDB module version pinned in go.mod.
const engineVersion = "v1.24.0"

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "data", "directory for the SQLite files")
	watchStdin := flag.Bool("watch-stdin", false, "exit when standard input is closed")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *showVersion {
		fmt.Println("ferretdb", engineVersion, "sqlite")
		return
	}

	info := version.Get()
	info.Version = engineVersion
	// buildInfo answers with this document; Quarry reads it to name the engine.
	info.BuildEnvironment.Set("quarry.backend", "sqlite")

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("invalid -log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		fail("invalid -data-dir: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail("cannot create data directory: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		fail("cannot start: %v", err)
	}

	if err := f.Run(ctx); err != nil {
		fail("stopped with error: %v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
}
