package scoring

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// AppendScoreLine appends the line `starpipe score` prints for one vector,
// without a newline: "BASE TEMPORAL ENVIRONMENTAL SEVERITY" with one decimal
// each and FIRST's rating word (None, Low, Medium, High, Critical) for the
// most specific score the vector defines, or "error: REASON" when Parse
// rejects it. ok reports whether the vector was valid.
func AppendScoreLine(b []byte, vector string) (_ []byte, ok bool) {
	v, err := Parse(vector)
	if err != nil {
		return append(append(b, "error: "...), err.Error()...), false
	}
	b = strconv.AppendFloat(b, v.Base(), 'f', 1, 64)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v.Temporal(), 'f', 1, 64)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v.Environmental(), 'f', 1, 64)
	b = append(b, ' ')
	return append(b, RatingName(v.Severity())...), true
}

// maxLine bounds the memory a line may take. A valid vector is at most
// maxVectorLen bytes, so any prefix this long already contains the error
// that Parse reports; the rest of such a line is read and discarded.
const maxLine = 64 << 10

// ScoreLines reads vectors one per line from r and writes one result line
// per input line to w (see AppendScoreLine), going on after invalid lines.
// A line ends at "\n", and a "\r" before it is dropped, so files written on
// Windows score the same; nothing else is trimmed, since the parser is
// strict. It returns how many lines were invalid, and any read or write
// error.
func ScoreLines(w io.Writer, r io.Reader) (invalid int, err error) {
	br := bufio.NewReaderSize(r, maxLine)
	bw := bufio.NewWriter(w)
	var out []byte
	for {
		line, rerr := br.ReadSlice('\n')
		overlong := errors.Is(rerr, bufio.ErrBufferFull)
		if rerr != nil && !overlong && len(line) == 0 {
			if errors.Is(rerr, io.EOF) {
				rerr = nil
			}
			if ferr := bw.Flush(); rerr == nil {
				rerr = ferr
			}
			return invalid, rerr
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		var ok bool
		out, ok = AppendScoreLine(out[:0], string(line))
		if ok && overlong {
			// Unreachable by the argument on maxLine; kept so that a
			// truncated line can never be reported as valid.
			out, ok = append(out[:0], "error: vector too long"...), false
		}
		if !ok {
			invalid++
		}
		out = append(out, '\n')
		if _, err := bw.Write(out); err != nil {
			return invalid, err
		}
		for overlong {
			_, rerr = br.ReadSlice('\n')
			overlong = errors.Is(rerr, bufio.ErrBufferFull)
		}
		// Flush before the reader would block, so that interactive use
		// sees each answer as soon as its line is entered.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return invalid, err
			}
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			if errors.Is(rerr, io.EOF) {
				rerr = nil
			}
			if ferr := bw.Flush(); rerr == nil {
				rerr = ferr
			}
			return invalid, rerr
		}
	}
}
