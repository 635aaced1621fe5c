// Package amass reads OWASP Amass enumeration output and turns it into
// starpipe assets (names, addresses, netblocks, autonomous systems). Assets
// are not findings: they are the attack surface that external scans target.
//
// Three layouts are read:
//   - Amass v3 `enum -json` lines, both the v3.0 layout (Timestamp, one
//     "source") and the later one ("sources" array);
//   - Amass v4 text graph lines: `name (FQDN) --> a_record --> addr (IPAddress)`;
//   - the Amass v4 asset database (SQLite, tables assets and relations),
//     read with a pure-Go SQLite driver (glebarez/go-sqlite).
package amass

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/starpipe/starpipe/ingest/internal/jsonsniff"
	"github.com/starpipe/starpipe/ingest/parse"
)

// Tool is the tool name reported in parse.Stats.Tools.
const Tool = "amass"

// SQLiteMagic starts every SQLite 3 database file.
const SQLiteMagic = "SQLite format 3\x00"

// Sniff reports whether prefix looks like Amass output: a SQLite database,
// a v3 JSON line (an object with "name" and one of the other v3 keys), or
// a v4 text graph line.
func Sniff(prefix []byte) bool {
	if bytes.HasPrefix(prefix, []byte(SQLiteMagic)) {
		return true
	}
	b := jsonsniff.TrimLeft(prefix)
	if len(b) == 0 {
		return false
	}
	if b[0] == '{' {
		f := jsonsniff.Describe(b)
		return f.Has("name") && f.HasAny("domain", "addresses", "sources", "source", "tag")
	}
	line := b
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	_, ok := parseGraphLine(string(bytes.TrimRight(line, "\r")))
	return ok
}

// Parse reads Amass output of any of the three layouts from r. A SQLite
// database needs a file, so it is copied to a temporary file first (at most
// Limits.MaxBytes); callers that have a path should use ParseFile instead.
func Parse(ctx context.Context, r io.Reader, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	lim := opt.Limits.WithDefaults()
	br := bufio.NewReaderSize(parse.LimitReader(r, lim.MaxBytes), 64<<10)
	// A failed Peek (limit, I/O) is met again, with its place, by the
	// first read of whichever reader follows.
	head, _ := br.Peek(len(SQLiteMagic))
	if string(head) == SQLiteMagic {
		return parseSQLiteStream(ctx, br, opt, sink)
	}
	return parseLines(ctx, br, opt, lim, sink)
}

// ParseFile reads Amass output from the file at path. A SQLite database is
// opened in place, read-only; other layouts are streamed through Parse.
func ParseFile(ctx context.Context, path string, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	if opt.File == "" {
		opt.File = path
	}
	f, err := os.Open(path)
	if err != nil {
		return parse.Stats{}, &parse.Error{File: opt.File, Offset: -1, Err: err}
	}
	defer f.Close()
	head := make([]byte, len(SQLiteMagic))
	n, _ := io.ReadFull(f, head)
	if string(head[:n]) != SQLiteMagic {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return parse.Stats{}, &parse.Error{File: opt.File, Offset: -1, Err: err}
		}
		return Parse(ctx, f, opt, sink)
	}
	lim := opt.Limits.WithDefaults()
	if fi, err := f.Stat(); err == nil && lim.MaxBytes >= 0 && fi.Size() > lim.MaxBytes {
		return parse.Stats{}, &parse.Error{File: opt.File, Offset: lim.MaxBytes,
			Err: fmt.Errorf("file larger than %d bytes: %w", lim.MaxBytes, parse.ErrLimit)}
	}
	return parseSQLite(ctx, path, opt, sink)
}

func readError(file string, line int, off int64, err error) *parse.Error {
	var pe *parse.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &parse.Error{File: file, Line: line, Offset: off, Err: fmt.Errorf("reading: %w", err)}
}

// parseSQLiteStream copies a database from a stream to a temporary file,
// because SQLite can only open files.
func parseSQLiteStream(ctx context.Context, r io.Reader, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	tmp, err := os.CreateTemp("", "starpipe-amass-*.sqlite")
	if err != nil {
		return parse.Stats{}, fmt.Errorf("%s: temporary copy of SQLite database: %w", opt.File, err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return parse.Stats{}, readError(opt.File, 0, n, err)
	}
	return parseSQLite(ctx, tmp.Name(), opt, sink)
}
