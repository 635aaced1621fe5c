package sarif

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/starpipe/starpipe/ingest/parse"
)

// lexer is a small pull-style JSON reader over an io.Reader. It exists instead
// of encoding/json's Decoder.Token because that allocates an interface per
// token, cannot bound a single string before buffering it, and reports
// offsets but not lines. The lexer keeps one growing window of the input:
// only the token being read must be contiguous, so memory is bounded by the
// largest string (Limits.MaxString), not by the file.
//
// Errors are sticky: the first one is kept in err and every later call
// returns zero values, so decoding code can stay linear and check err at
// the points where it matters.
type lexer struct {
	r    io.Reader
	buf  []byte
	pos  int   // next unread byte in buf
	end  int   // end of valid data in buf
	base int64 // absolute offset of buf[0]
	line int   // 1-based line of buf[pos]; newlines only occur in whitespace in valid JSON
	eof  bool
	rerr error // read error to report once the buffer drains

	depth     int
	afterOpen bool // the last token was '{' or '[' (first member not yet read)

	lim     parse.Limits
	file    string
	err     error
	scratch []byte
	keyBuf  []byte
}

const readChunk = 64 << 10

func newLexer(r io.Reader, file string, lim parse.Limits, base int64) *lexer {
	return &lexer{r: r, buf: make([]byte, readChunk), base: base, line: 1, lim: lim, file: file}
}

// offset is the absolute offset of the next unread byte.
func (d *lexer) offset() int64 { return d.base + int64(d.pos) }

// errAt records a format error at the current position.
func (d *lexer) errAt(format string, args ...any) {
	if d.err == nil {
		d.err = &parse.Error{File: d.file, Line: d.line, Offset: d.offset(), Err: fmt.Errorf(format+": %w", append(args, parse.ErrFormat)...)}
	}
}

// limitAt records a limit error at the current position.
func (d *lexer) limitAt(format string, args ...any) {
	if d.err == nil {
		d.err = &parse.Error{File: d.file, Line: d.line, Offset: d.offset(), Err: fmt.Errorf(format+": %w", append(args, parse.ErrLimit)...)}
	}
}

// fill makes at least n bytes available at buf[pos:], reading as needed. It
// reports false when the input ends first (or an error was recorded).
func (d *lexer) fill(n int) bool {
	for d.end-d.pos < n {
		if d.err != nil {
			return false
		}
		if d.eof {
			if d.rerr != nil && d.err == nil {
				if errors.Is(d.rerr, parse.ErrLimit) {
					d.err = &parse.Error{File: d.file, Line: d.line, Offset: d.base + int64(d.end), Err: d.rerr}
				} else {
					d.err = &parse.Error{File: d.file, Line: d.line, Offset: d.base + int64(d.end), Err: fmt.Errorf("reading input: %w", d.rerr)}
				}
			}
			return false
		}
		if d.pos > 0 {
			// Drop what has been consumed so the window stays small.
			copy(d.buf, d.buf[d.pos:d.end])
			d.end -= d.pos
			d.base += int64(d.pos)
			d.pos = 0
		}
		if len(d.buf)-d.end < readChunk/2 && len(d.buf) < n+readChunk {
			nb := make([]byte, max(2*len(d.buf), n+readChunk))
			copy(nb, d.buf[:d.end])
			d.buf = nb
		}
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if d.lim.MaxBytes >= 0 && d.base+int64(d.end) > d.lim.MaxBytes {
			d.end = int(d.lim.MaxBytes - d.base)
			if d.end < d.pos {
				d.end = d.pos
			}
			d.eof = true
			d.rerr = fmt.Errorf("file larger than %d bytes: %w", d.lim.MaxBytes, parse.ErrLimit)
			continue
		}
		if err != nil {
			d.eof = true
			if err != io.EOF {
				d.rerr = err
			}
		}
	}
	return true
}

// reset repositions the lexer after the underlying reader was seeked.
func (d *lexer) reset(abs int64, line, depth int) {
	d.pos, d.end, d.base, d.line, d.depth = 0, 0, abs, line, depth
	d.eof, d.rerr, d.afterOpen = false, nil, false
}

// peek skips whitespace and returns the next byte without consuming it.
// ok is false at end of input.
func (d *lexer) peek() (c byte, ok bool) {
	for {
		for d.pos < d.end {
			c = d.buf[d.pos]
			switch c {
			case ' ', '\t', '\r':
				d.pos++
			case '\n':
				d.pos++
				d.line++
			default:
				return c, true
			}
		}
		if !d.fill(1) {
			return 0, false
		}
	}
}

// unexpected records a syntax error for the byte at the current position.
func (d *lexer) unexpected(what string) {
	c, ok := d.peek()
	switch {
	case d.err != nil:
	case !ok:
		d.errAt("unexpected end of input, expected %s", what)
	case c < 0x20 || c >= 0x7f:
		d.errAt("invalid character %s, expected %s", strconv.QuoteRune(rune(c)), what)
	default:
		d.errAt("invalid character %q, expected %s", c, what)
	}
}

func (d *lexer) push() bool {
	d.depth++
	if d.lim.MaxDepth >= 0 && d.depth > d.lim.MaxDepth {
		d.limitAt("nesting deeper than %d", d.lim.MaxDepth)
		return false
	}
	if d.depth > hardMaxDepth {
		// Limits can be switched off, but skip and the property walker recurse,
		// so an absolute ceiling keeps a hostile file from exhausting the stack.
		d.limitAt("nesting deeper than %d", hardMaxDepth)
		return false
	}
	return true
}

const hardMaxDepth = 10000

// beginObj consumes '{' and reports true. For null or a value of another
// type it consumes the value and reports false: SARIF producers put odd
// types in optional places and a best-effort reader ignores them.
func (d *lexer) beginObj() bool { return d.begin('{') }

// beginArr is beginObj for arrays.
func (d *lexer) beginArr() bool { return d.begin('[') }

func (d *lexer) begin(open byte) bool {
	c, ok := d.peek()
	if !ok {
		d.unexpected("a value")
		return false
	}
	if c != open {
		d.skip()
		return false
	}
	d.pos++
	d.afterOpen = true
	return d.push()
}

// more advances to the next member of the open object or array (close is
// '}' or ']') and reports whether there is one. It consumes the separator and
// the closing bracket, and rejects a trailing comma.
func (d *lexer) more(close byte) bool {
	if d.err != nil {
		return false
	}
	c, ok := d.peek()
	if !ok {
		d.unexpected(fmt.Sprintf("',' or '%c'", close))
		return false
	}
	if d.afterOpen {
		d.afterOpen = false
		if c == close {
			d.pos++
			d.depth--
			return false
		}
		return true
	}
	switch c {
	case close:
		d.pos++
		d.depth--
		return false
	case ',':
		d.pos++
		if c, ok = d.peek(); ok && c == close {
			d.errAt("trailing comma before '%c'", close)
			return false
		}
		return true
	}
	d.unexpected(fmt.Sprintf("',' or '%c'", close))
	return false
}

// objMore and arrMore name more for readability at call sites.
func (d *lexer) objMore() bool { return d.more('}') }
func (d *lexer) arrMore() bool { return d.more(']') }

// key reads an object key and the colon after it. The bytes are valid until
// the next lexer call.
func (d *lexer) key() []byte {
	c, ok := d.peek()
	if !ok || c != '"' {
		d.unexpected("a string key")
		return nil
	}
	// Copy the key: finding the colon may refill the window, which moves
	// the bytes str returned.
	d.keyBuf = append(d.keyBuf[:0], d.str()...)
	k := d.keyBuf
	if c, ok = d.peek(); !ok || c != ':' {
		d.unexpected("':'")
		return nil
	}
	d.pos++
	return k
}

// str reads a string token at the current position (which must be '"'). The
// result aliases the lexer's buffers and is valid until the next call.
func (d *lexer) str() []byte {
	d.pos++ // opening quote
	start := d.pos
	i := start
	plain := true
	for {
		if i >= d.end {
			n := i - start
			if d.lim.MaxString >= 0 && n > d.lim.MaxString {
				d.limitAt("string longer than %d bytes", d.lim.MaxString)
				return nil
			}
			d.pos = start
			ok := d.fill(n + 1)
			start = d.pos
			i = start + n
			if !ok {
				d.pos = i
				d.unexpected("'\"' closing the string")
				return nil
			}
		}
		c := d.buf[i]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			if i+1 >= d.end {
				// The escaped byte is not in the window yet: refill with
				// the backslash kept, then look at it again.
				n := i - start
				d.pos = start
				ok := d.fill(n + 2)
				start = d.pos
				i = start + n
				if !ok {
					d.pos = i
					d.unexpected("an escape sequence")
					return nil
				}
			}
			i += 2
			continue
		}
		if c < 0x20 {
			d.pos = i
			d.errAt("invalid control character U+%04X in string", c)
			return nil
		}
		if c >= 0x80 {
			plain = false
		}
		i++
	}
	if d.lim.MaxString >= 0 && i-start > d.lim.MaxString {
		d.pos = start
		d.limitAt("string longer than %d bytes", d.lim.MaxString)
		return nil
	}
	raw := d.buf[start:i]
	d.pos = i + 1
	if plain {
		return raw
	}
	return d.unescape(raw, start)
}

// unescape decodes escapes and replaces invalid UTF-8 with U+FFFD, as
// encoding/json does.
func (d *lexer) unescape(raw []byte, start int) []byte {
	out := d.scratch[:0]
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			if i+1 >= len(raw) {
				d.pos = start + i
				d.errAt("invalid escape in string")
				return nil
			}
			switch e := raw[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'b':
				out = append(out, '\b')
				i += 2
			case 'f':
				out = append(out, '\f')
				i += 2
			case 'n':
				out = append(out, '\n')
				i += 2
			case 'r':
				out = append(out, '\r')
				i += 2
			case 't':
				out = append(out, '\t')
				i += 2
			case 'u':
				r, ok := hex4(raw[i+2:])
				if !ok {
					d.pos = start + i
					d.errAt("invalid \\u escape in string")
					return nil
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(-1), false
					if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						r2, ok2 = hex4(raw[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				d.pos = start + i
				d.errAt("invalid escape '\\%c' in string", e)
				return nil
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, "\uFFFD"...)
			} else {
				out = append(out, raw[i:i+size]...)
			}
			i += size
		}
	}
	d.scratch = out
	return out
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a number token and returns its text (valid until the next
// call).
func (d *lexer) number() []byte {
	start := d.pos
	i := start
	for {
		if i >= d.end {
			n := i - start
			if n > 1024 {
				d.limitAt("number longer than 1024 bytes")
				return nil
			}
			d.pos = start
			if !d.fill(n + 1) {
				// End of input right after a number is fine at top level;
				// the caller reports what is missing.
				start = d.pos
				i = start + n
				break
			}
			start = d.pos
			i = start + n
		}
		c := d.buf[i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			i++
			continue
		}
		break
	}
	tok := d.buf[start:i]
	if !validNumber(tok) {
		d.errAt("invalid number %q", tok)
		return nil
	}
	d.pos = i
	return tok
}

// validNumber checks the JSON number grammar.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(b)
}

// literal consumes true, false or null.
func (d *lexer) literal(word string) bool {
	if !d.fill(len(word)) || string(d.buf[d.pos:d.pos+len(word)]) != word {
		d.unexpected("a value")
		return false
	}
	d.pos += len(word)
	return true
}

// skip consumes one value of any type, checking its syntax and the limits.
func (d *lexer) skip() {
	c, ok := d.peek()
	if !ok {
		d.unexpected("a value")
		return
	}
	switch c {
	case '{':
		d.pos++
		d.afterOpen = true
		if !d.push() {
			return
		}
		for d.objMore() {
			d.key()
			d.skip()
		}
	case '[':
		d.pos++
		d.afterOpen = true
		if !d.push() {
			return
		}
		for d.arrMore() {
			d.skip()
		}
	case '"':
		d.skipStr()
	case 't':
		d.literal("true")
	case 'f':
		d.literal("false")
	case 'n':
		d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			d.number()
			return
		}
		d.unexpected("a value")
	}
}

// null consumes a null literal if one is next.
func (d *lexer) null() bool {
	if c, ok := d.peek(); ok && c == 'n' {
		return d.literal("null")
	}
	return false
}

// strVal reads a string value; other types are skipped and give "".
func (d *lexer) strVal() string {
	c, ok := d.peek()
	if ok && c == '"' {
		return string(d.str())
	}
	d.skip()
	return ""
}

// intVal reads an integer value; ok is false (and the value skipped) for
// anything else, including numbers with a fraction or out of int range.
func (d *lexer) intVal() (int, bool) {
	c, ok := d.peek()
	if ok && (c == '-' || (c >= '0' && c <= '9')) {
		tok := d.number()
		n, err := strconv.Atoi(string(tok))
		return n, err == nil
	}
	d.skip()
	return 0, false
}

// scalar reads a string, number or boolean as text (numbers in their JSON
// spelling); objects, arrays and null give ok false and are skipped.
func (d *lexer) scalar() (s string, isNum, ok bool) {
	c, present := d.peek()
	if !present {
		d.unexpected("a value")
		return "", false, false
	}
	switch {
	case c == '"':
		return string(d.str()), false, true
	case c == '-' || (c >= '0' && c <= '9'):
		return string(d.number()), true, d.err == nil
	case c == 't':
		return "true", false, d.literal("true")
	case c == 'f':
		return "false", false, d.literal("false")
	}
	d.skip()
	return "", false, false
}

// skipStr consumes a string token without building its value: skipping
// (codeFlows, unused rule metadata, the first pass over deferred results)
// is most of the work on large logs. It checks what str checks: control
// characters, escapes, the length limit.
func (d *lexer) skipStr() {
	d.pos++ // opening quote
	start := d.pos
	i := start
	for {
		if i+6 > d.end && !d.eof {
			// Keep a whole escape in the window; compaction moves start.
			n := i - start
			if d.lim.MaxString >= 0 && n > d.lim.MaxString {
				d.limitAt("string longer than %d bytes", d.lim.MaxString)
				return
			}
			d.pos = start
			d.fill(n + 6)
			if d.err != nil {
				return
			}
			start = d.pos
			i = start + n
		}
		if i >= d.end {
			d.pos = i
			d.unexpected("'\"' closing the string")
			return
		}
		c := d.buf[i]
		switch {
		case c == '"':
			if d.lim.MaxString >= 0 && i-start > d.lim.MaxString {
				d.pos = start
				d.limitAt("string longer than %d bytes", d.lim.MaxString)
				return
			}
			d.pos = i + 1
			return
		case c == '\\':
			if i+1 >= d.end {
				d.pos = i
				d.unexpected("an escape sequence")
				return
			}
			switch d.buf[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(d.buf[i+2 : min(i+6, d.end)]); !ok {
					d.pos = i
					d.errAt("invalid \\u escape in string")
					return
				}
				i += 6
			default:
				d.pos = i
				d.errAt("invalid escape '\\%c' in string", d.buf[i+1])
				return
			}
		case c < 0x20:
			d.pos = i
			d.errAt("invalid control character U+%04X in string", c)
			return
		default:
			i++
		}
	}
}
