// Package parse holds what every starpipe parser shares: the options and
// limits a parser honours, the sink it streams records into, the counts it
// reports, and the error type that names the file and the place in it.
//
// Parsers (ingest/sarif, ingest/nuclei, ingest/amass) are pure: an io.Reader
// in, records out through a Sink, no globals, no I/O besides the reader.
package parse

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/starpipe/starpipe/finding"
)

// Limits bound what a parser accepts from one file. Zero fields mean the
// default; a negative value means no limit.
type Limits struct {
	MaxBytes   int64 // whole file
	MaxDepth   int   // JSON nesting depth
	MaxString  int   // one JSON string or text line, in bytes
	MaxResults int   // results (findings, not-findings, assets) in one file
}

// DefaultLimits are generous enough for every real file seen (a 1 GB SARIF
// parses) and small enough that a hostile file cannot exhaust memory.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:   16 << 30, // 16 GiB, the daemon's default ingest.max_bytes
		MaxDepth:   128,
		MaxString:  16 << 20, // 16 MiB
		MaxResults: 10_000_000,
	}
}

// WithDefaults fills zero fields from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxString == 0 {
		l.MaxString = d.MaxString
	}
	if l.MaxResults == 0 {
		l.MaxResults = d.MaxResults
	}
	return l
}

// Options tell a parser what it is reading.
type Options struct {
	File   string           // name used in errors; "-" for standard input
	Kind   finding.ScanKind // scan kind stamped on findings (empty: parser's default)
	Scope  string           // scope stamped on findings (empty: derived per finding, see each parser)
	Limits Limits
}

// Sink receives records as they are parsed. A parser hands over ownership of
// each record: the sink may keep the pointer. Returning an error stops the
// parse and the parser returns that error unchanged (wrapped).
type Sink struct {
	Finding func(*finding.Finding) error
	Asset   func(*finding.Asset) error
}

// Stats are what a parser counted in one file.
type Stats struct {
	Findings    int // includes suppressed findings
	Suppressed  int
	NotFindings int // results of kinds that are not findings (SARIF pass, informational, notApplicable)
	Assets      int
	Runs        int // SARIF runs, nuclei records read, amass lines read
	// Tools names every tool that produced the file, sorted and unique,
	// including tools that reported nothing: a clean rescan must still say
	// which scanner's findings it closes.
	Tools []string
}

// Func is the signature every parser implements.
type Func func(ctx context.Context, r io.Reader, opt Options, sink Sink) (Stats, error)

// ErrLimit is wrapped by every error caused by a configured limit.
var ErrLimit = errors.New("limit exceeded")

// ErrFormat is wrapped by every error caused by input that is not the
// expected format (syntax, structure, encoding).
var ErrFormat = errors.New("invalid input")

// Error names the file and the place in it where parsing failed. Line is
// 1-based and zero when unknown; Offset is the byte offset from the start of
// the file and -1 when unknown.
type Error struct {
	File   string
	Line   int
	Offset int64
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Offset >= 0:
		return fmt.Sprintf("%s:%d (byte %d): %v", e.File, e.Line, e.Offset, e.Err)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	case e.Offset >= 0:
		return fmt.Sprintf("%s: byte %d: %v", e.File, e.Offset, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error wrapping ErrFormat-style causes.
func Errorf(file string, line int, offset int64, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Offset: offset, Err: fmt.Errorf(format, args...)}
}

// LimitReader returns a reader that fails with an ErrLimit error once more
// than max bytes have been read (max < 0: no limit).
func LimitReader(r io.Reader, max int64) io.Reader {
	if max < 0 {
		return r
	}
	return &limitReader{r: r, left: max}
}

type limitReader struct {
	r    io.Reader
	left int64
	read int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, fmt.Errorf("file larger than %d bytes: %w", l.read-1, ErrLimit)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.read += int64(n)
	if l.left < 0 {
		return n - 1, fmt.Errorf("file larger than %d bytes: %w", l.read-1, ErrLimit)
	}
	return n, err
}
