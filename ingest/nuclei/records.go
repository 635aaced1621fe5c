package nuclei

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/starpipe/starpipe/ingest/parse"
)

// recordReader splits a nuclei output stream into its records without
// decoding them: JSON objects one per line (-jsonl), objects spread over
// several lines, a top-level array of objects (-json-export), or any mix of
// those concatenated. It tracks line and byte offset so that errors can say
// where they are, and enforces MaxDepth, MaxString and the record size bound
// before encoding/json ever sees the bytes.
//
// The bytes it returns are a window into its buffer, valid until the next
// call: json.Unmarshal does not keep them, so no record is copied.
type recordReader struct {
	r    io.Reader
	file string

	buf   []byte // buf[0:end] holds unread (or current-record) bytes
	pos   int    // next byte to look at
	end   int
	base  int64 // file offset of buf[0]
	line  int   // line of buf[pos]
	atEOF bool
	rdErr error // error other than io.EOF from r

	maxDepth  int
	maxString int
	maxRecord int

	inArray   bool // inside a top-level array
	needComma bool // in an array, after an element
	afterBOM  bool

	orig    []byte // the last record as read
	cut     []span // ranges of orig replaced by null
	scratch []byte // the last record after splicing
}

// maxRecordSize bounds one record: four times the string limit leaves room
// for a request and a response of the maximum string size plus the rest of
// the record.
func maxRecordSize(l parse.Limits) int {
	if l.MaxString < 0 {
		return -1
	}
	const slack = 1 << 20
	if l.MaxString > (1<<62)/4 {
		return -1
	}
	return 4*l.MaxString + slack
}

func newRecordReader(r io.Reader, file string, l parse.Limits) *recordReader {
	return &recordReader{
		r:         r,
		file:      file,
		buf:       make([]byte, 64<<10),
		line:      1,
		maxDepth:  l.MaxDepth,
		maxString: l.MaxString,
		maxRecord: maxRecordSize(l),
	}
}

// fill reads more input, keeping buf[keep:end] and moving it to the front.
// It returns the new index of what was at keep.
func (rr *recordReader) fill(keep int) (int, error) {
	if rr.rdErr != nil {
		return keep, rr.rdErr
	}
	if rr.atEOF {
		return keep, io.EOF
	}
	if keep > 0 {
		n := copy(rr.buf, rr.buf[keep:rr.end])
		rr.base += int64(keep)
		rr.pos -= keep
		rr.end = n
		keep = 0
	}
	if rr.end == len(rr.buf) {
		if rr.maxRecord >= 0 && len(rr.buf) >= rr.maxRecord {
			return keep, rr.errAt(fmt.Errorf("record larger than %d bytes: %w", rr.maxRecord, parse.ErrLimit))
		}
		nb := make([]byte, 2*len(rr.buf))
		copy(nb, rr.buf[:rr.end])
		rr.buf = nb
	}
	for {
		n, err := rr.r.Read(rr.buf[rr.end:])
		rr.end += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				rr.atEOF = true
			} else {
				rr.rdErr = rr.errAt(fmt.Errorf("reading: %w", err))
			}
		}
		if n > 0 {
			return keep, nil
		}
		if err != nil {
			if rr.rdErr != nil {
				return keep, rr.rdErr
			}
			return keep, io.EOF
		}
	}
}

func (rr *recordReader) offset() int64 { return rr.base + int64(rr.pos) }

func (rr *recordReader) errAt(err error) *parse.Error {
	var pe *parse.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &parse.Error{File: rr.file, Line: rr.line, Offset: rr.offset(), Err: err}
}

func (rr *recordReader) formatErr(format string, args ...any) *parse.Error {
	return rr.errAt(fmt.Errorf(format+": %w", append(args, parse.ErrFormat)...))
}

// next returns the next record, with the line and offset where it starts,
// or io.EOF after the last one.
func (rr *recordReader) next() (rec []byte, line int, off int64, err error) {
	for {
		if rr.pos == rr.end {
			if _, err := rr.fill(rr.pos); err != nil {
				if err == io.EOF {
					if rr.inArray {
						return nil, 0, 0, rr.formatErr("unexpected end of input inside a JSON array")
					}
					return nil, 0, 0, io.EOF
				}
				return nil, 0, 0, err
			}
			continue
		}
		c := rr.buf[rr.pos]
		if !rr.afterBOM {
			rr.afterBOM = true
			if c == 0xEF {
				// A UTF-8 BOM at the very start; needs 3 bytes.
				for rr.end-rr.pos < 3 {
					if _, err := rr.fill(rr.pos); err != nil {
						break
					}
				}
				if rr.end-rr.pos >= 3 && rr.buf[rr.pos+1] == 0xBB && rr.buf[rr.pos+2] == 0xBF {
					rr.pos += 3
					continue
				}
			}
		}
		switch c {
		case ' ', '\t', '\r':
			rr.pos++
			continue
		case '\n':
			rr.pos++
			rr.line++
			continue
		case '[':
			if rr.inArray {
				return nil, 0, 0, rr.formatErr("nested array: nuclei records are JSON objects")
			}
			rr.inArray = true
			rr.needComma = false
			rr.pos++
			continue
		case ']':
			if !rr.inArray {
				return nil, 0, 0, rr.formatErr("unexpected ']'")
			}
			rr.inArray = false
			rr.pos++
			continue
		case ',':
			if !rr.inArray || !rr.needComma {
				return nil, 0, 0, rr.formatErr("unexpected ','")
			}
			rr.needComma = false
			rr.pos++
			continue
		case '{':
			if rr.inArray && rr.needComma {
				return nil, 0, 0, rr.formatErr("missing ',' between array elements")
			}
			line, off = rr.line, rr.offset()
			rec, err = rr.object()
			if err != nil {
				return nil, 0, 0, err
			}
			rr.needComma = rr.inArray
			return rec, line, off, nil
		}
		return nil, 0, 0, rr.formatErr("unexpected %s: nuclei output is JSON objects, one per line, or a JSON array of them", quoteByte(c))
	}
}

// dropped are the top-level keys whose values object() cuts out of a
// record before encoding/json sees it. They hold the raw traffic (with the
// credentials that were sent), the whole template, and interactsh
// callbacks: starpipe never keeps them, and they are most of a record's
// bytes, so cutting them saves decoding work and keeps secrets out of
// memory. Their contents are only checked for string and bracket balance.
var dropped = map[string]bool{
	"request":          true,
	"response":         true,
	"curl-command":     true,
	"template-encoded": true,
	"interaction":      true,
	"meta":             true,
}

// span is a byte range [from, to) of a record, relative to its start.
type span struct{ from, to int }

// object scans one JSON object starting at buf[pos] == '{' and returns its
// bytes, with the values of dropped keys replaced by null (rr.cut lists
// the replaced ranges, for error offsets). It checks nesting depth, string
// length and record size; syntax is left to encoding/json.
func (rr *recordReader) object() ([]byte, error) {
	start := rr.pos
	depth := 0
	inString, escape := false, false
	strLen, strStart := 0, 0
	isKey, expectKey, drop := false, false, false
	dropFrom := -1
	rr.cut = rr.cut[:0]
	for {
		if rr.pos == rr.end {
			if rr.maxRecord >= 0 && rr.pos-start > rr.maxRecord {
				return nil, rr.errAt(fmt.Errorf("record larger than %d bytes: %w", rr.maxRecord, parse.ErrLimit))
			}
			ns, err := rr.fill(start)
			if err != nil {
				if err == io.EOF {
					return nil, rr.formatErr("unexpected end of input inside a JSON object")
				}
				return nil, err
			}
			start = ns
		}
		buf := rr.buf[:rr.end]
		quote := -1 // index of the next '"' at or after i, when known
		for i := rr.pos; i < len(buf); i++ {
			c := buf[i]
			if inString {
				if escape {
					escape = false
					strLen++
					continue
				}
				// Skip plain string bytes with IndexByte (vectorised):
				// strings such as responses are most of the input.
				if quote < i {
					quote = bytes.IndexByte(buf[i:], '"')
					if quote >= 0 {
						quote += i
					} else {
						quote = len(buf)
					}
				}
				run := buf[i:quote]
				if b := bytes.IndexByte(run, '\\'); b >= 0 {
					run = run[:b]
				}
				strLen += len(run)
				// Raw newlines are invalid in JSON strings, but a dropped
				// value is never decoded, so count them to keep lines right.
				rr.line += bytes.Count(run, []byte{'\n'})
				if rr.maxString >= 0 && strLen > rr.maxString {
					rr.pos = i
					return nil, rr.errAt(fmt.Errorf("JSON string longer than %d bytes: %w", rr.maxString, parse.ErrLimit))
				}
				i += len(run)
				if i == len(buf) {
					break
				}
				switch buf[i] {
				case '\\':
					escape = true
					strLen++
				case '"':
					inString = false
					rel := i - start
					switch {
					case isKey:
						drop = dropped[string(buf[start+strStart+1:i])]
						expectKey = false
					case dropFrom >= 0 && depth == 1:
						rr.cut = append(rr.cut, span{dropFrom, rel + 1})
						dropFrom = -1
					}
				}
				continue
			}
			switch c {
			case '"':
				inString, strLen, strStart = true, 0, i-start
				isKey = depth == 1 && expectKey
				if depth == 1 && !isKey && drop {
					dropFrom, drop = i-start, false
				}
			case '{', '[':
				depth++
				if rr.maxDepth >= 0 && depth > rr.maxDepth {
					rr.pos = i
					return nil, rr.errAt(fmt.Errorf("JSON nested deeper than %d: %w", rr.maxDepth, parse.ErrLimit))
				}
				switch {
				case depth == 1:
					expectKey = true
				case depth == 2 && drop:
					dropFrom, drop = i-start, false
				}
			case '}', ']':
				depth--
				if depth == 1 && dropFrom >= 0 {
					rr.cut = append(rr.cut, span{dropFrom, i - start + 1})
					dropFrom = -1
				}
				if depth == 0 {
					rr.pos = i + 1
					if rr.maxRecord >= 0 && rr.pos-start > rr.maxRecord {
						return nil, rr.errAt(fmt.Errorf("record larger than %d bytes: %w", rr.maxRecord, parse.ErrLimit))
					}
					rr.orig = rr.buf[start:rr.pos]
					return rr.splice(rr.orig), nil
				}
			case ',':
				if depth == 1 {
					expectKey, drop = true, false
				}
			case '\n':
				rr.line++
			}
		}
		rr.pos = len(buf)
	}
}

// splice returns rec with every cut range replaced by null.
func (rr *recordReader) splice(rec []byte) []byte {
	if len(rr.cut) == 0 {
		return rec
	}
	out := rr.scratch[:0]
	prev := 0
	for _, c := range rr.cut {
		out = append(out, rec[prev:c.from]...)
		out = append(out, "null"...)
		prev = c.to
	}
	out = append(out, rec[prev:]...)
	rr.scratch = out
	return out
}

// origOffset maps an offset in a spliced record back to the original.
func (rr *recordReader) origOffset(at int64) int64 {
	for _, c := range rr.cut {
		if at <= int64(c.from) {
			break
		}
		at += int64(c.to-c.from) - int64(len("null"))
	}
	return at
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", string(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
