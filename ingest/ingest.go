// Package ingest turns scanner output files into starpipe findings and
// assets. It recognises the format of a file from its content, hands the
// file to the parser for that format (ingest/sarif, ingest/nuclei,
// ingest/amass), and offers a dry run that reports what a file would
// contribute without storing anything.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/starpipe/starpipe/ingest/amass"
	"github.com/starpipe/starpipe/ingest/nuclei"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sarif"
)

// Format names an input format.
type Format string

const (
	FormatAuto   Format = "auto" // detect from the content
	FormatSARIF  Format = "sarif"
	FormatNuclei Format = "nuclei"
	FormatAmass  Format = "amass"
	// FormatEmpty is what Detect reports for input with no content at all
	// (zero bytes, or only whitespace and a byte order mark). Nuclei and
	// Amass write such files when they found nothing, so in auto mode they
	// are accepted with zero findings; see ParseReader for the one
	// exception.
	FormatEmpty Format = "empty"
)

// ParseFormat validates a format given by a user; "" means auto.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatSARIF, FormatNuclei, FormatAmass:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (allowed: auto, sarif, nuclei, amass)", s)
}

// SniffSize is how much of a file Detect looks at.
const SniffSize = 64 << 10

// parser returns the parse function for a concrete format.
func parser(f Format) (parse.Func, error) {
	switch f {
	case FormatSARIF:
		return sarif.Parse, nil
	case FormatNuclei:
		return nuclei.Parse, nil
	case FormatAmass:
		return amass.Parse, nil
	}
	return nil, fmt.Errorf("no parser for format %q", f)
}

// ParseFile parses the file at path. With FormatAuto (or "") the format is
// detected from the content; the file name never decides, except that a
// zero-byte file named *.sarif is rejected (see ParseReader). An Amass
// SQLite database is opened in place rather than streamed. It returns the
// format used. Errors caused by the file are *parse.Error values naming it.
func ParseFile(ctx context.Context, path string, format Format, opt parse.Options, sink parse.Sink) (Format, parse.Stats, error) {
	if opt.File == "" {
		opt.File = path
	}
	f, err := openFile(path, opt.File)
	if err != nil {
		return "", parse.Stats{}, err
	}
	defer f.Close()
	return parseOpened(ctx, f, path, format, opt, sink)
}

// openFile opens path and reports failure as a *parse.Error naming file.
func openFile(path, file string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, &parse.Error{File: file, Offset: -1, Err: err}
	}
	return f, nil
}

// ParseReader parses a stream, typically standard input. It buffers the
// first SniffSize bytes to detect the format when format is FormatAuto.
//
// Empty input in auto mode yields FormatEmpty, zero stats and no error,
// because nuclei and Amass write nothing when they find nothing. The
// exception is an empty input whose name (opt.File) ends in .sarif or
// .sarif.json: a SARIF producer always writes a log object, so an empty
// .sarif file means the tool failed, and counting it as "no findings"
// would turn a failed scan into clean evidence.
func ParseReader(ctx context.Context, r io.Reader, format Format, opt parse.Options, sink parse.Sink) (Format, parse.Stats, error) {
	return parseOpened(ctx, r, "", format, opt, sink)
}

// parseOpened parses r; path, when not empty, is the file r reads, which
// lets an Amass SQLite database be opened in place.
func parseOpened(ctx context.Context, r io.Reader, path string, format Format, opt parse.Options, sink parse.Sink) (Format, parse.Stats, error) {
	if opt.File == "" {
		opt.File = "-"
	}
	opt.Limits = opt.Limits.WithDefaults()
	if format == "" {
		format = FormatAuto
	}
	br := bufio.NewReaderSize(parse.LimitReader(r, opt.Limits.MaxBytes), SniffSize)
	// A short or failed Peek is fine here: the parser meets the same
	// error (limit, I/O) on its first read and reports it with its place.
	// Only an error before any byte matters, or the input would pass as
	// empty (a directory, an unreadable device).
	prefix, peekErr := br.Peek(SniffSize)
	if len(prefix) == 0 && peekErr != nil && !errors.Is(peekErr, io.EOF) {
		var pe *parse.Error
		if errors.As(peekErr, &pe) {
			return "", parse.Stats{}, withFile(pe, opt.File)
		}
		return "", parse.Stats{}, &parse.Error{File: opt.File, Offset: 0, Err: fmt.Errorf("reading: %w", peekErr)}
	}

	if format == FormatAuto {
		f, err := Detect(prefix)
		if err != nil {
			return "", parse.Stats{}, withFile(err, opt.File)
		}
		if f == FormatEmpty {
			if isSARIFName(opt.File) {
				return FormatSARIF, parse.Stats{}, &parse.Error{File: opt.File, Offset: 0,
					Err: fmt.Errorf("empty SARIF file: a SARIF log is a JSON object, so the tool that wrote it probably failed: %w", parse.ErrFormat)}
			}
			return FormatEmpty, parse.Stats{}, nil
		}
		format = f
	}
	if format == FormatAmass && path != "" && bytes.HasPrefix(prefix, []byte(amass.SQLiteMagic)) {
		st, err := amass.ParseFile(ctx, path, opt, sink)
		return format, st, withFile(err, opt.File)
	}
	pf, err := parser(format)
	if err != nil {
		return "", parse.Stats{}, err
	}
	st, err := pf(ctx, br, opt, sink)
	return format, st, withFile(err, opt.File)
}

func isSARIFName(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, ".sarif") || strings.HasSuffix(n, ".sarif.json")
}

// withFile makes sure a *parse.Error names the file; other errors (a sink's
// error, cancellation) pass unchanged. The errors it fixes are fresh values
// made for this parse, so setting the field in place is safe.
func withFile(err error, file string) error {
	var pe *parse.Error
	if errors.As(err, &pe) && (pe.File == "" || pe.File == detectFile) {
		pe.File = file
	}
	return err
}
