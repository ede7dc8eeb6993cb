// Which characters FerretDB's case-insensitive regular expressions (Go's regexp
// with `(?i)`) match for each ASCII character of a pattern: prints "c p" (code
// points, decimal) for every Unicode scalar value c other than p that `(?i)p`
// matches. tests/app/test_engine_own_reads.py compares this with the case fold
// the read planner applies in PostgreSQL (`planner.FOLD_FROM` / `FOLD_TO`).
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"
)

func main() {
	var all strings.Builder
	for c := rune(1); c <= utf8.MaxRune; c++ {
		if c >= 0xD800 && c <= 0xDFFF {
			continue // surrogates are no characters
		}
		all.WriteRune(c)
	}
	text := all.String()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for p := rune(1); p < utf8.RuneSelf; p++ {
		pattern := regexp.MustCompile(`(?i)` + regexp.QuoteMeta(string(p)))
		for _, at := range pattern.FindAllStringIndex(text, -1) {
			c, _ := utf8.DecodeRuneInString(text[at[0]:at[1]])
			if c != p {
				fmt.Fprintf(out, "%d %d\n", c, p)
			}
		}
	}
}
