package activity

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// BreakError names the first row at which a chain does not hold.
type BreakError struct {
	Seq    int64  // the row's seq as given (or the seq expected, when the row has none)
	ID     int64  // the row's id, 0 when unknown
	Line   int    // line of the export file, 0 for the live table
	Reason string // what differs
}

func (e *BreakError) Error() string {
	var where []string
	if e.ID != 0 {
		where = append(where, fmt.Sprintf("id %d", e.ID))
	}
	if e.Line != 0 {
		where = append(where, fmt.Sprintf("line %d", e.Line))
	}
	at := ""
	if len(where) > 0 {
		at = " (" + strings.Join(where, ", ") + ")"
	}
	return fmt.Sprintf("activity chain broken at row seq %d%s: %s", e.Seq, at, e.Reason)
}

// Verifier checks rows one after another against the chain: consecutive
// seq, prev_hash equal to the hash recomputed from the row before, hash
// equal to the hash recomputed from the row itself.
type Verifier struct {
	next  int64  // seq expected next
	prev  string // hash the next row must name as prev_hash
	count int64
	line  int // current file line, for errors; 0 when none
}

// NewVerifier starts a check at row firstSeq, whose prev_hash must be
// prevHash (GenesisHash for seq 1).
func NewVerifier(firstSeq int64, prevHash string) *Verifier {
	return &Verifier{next: firstSeq, prev: prevHash}
}

// Check verifies the next row; its error is a *BreakError.
func (v *Verifier) Check(e Entry) error {
	brk := func(format string, args ...any) error {
		return &BreakError{Seq: e.Seq, ID: e.ID, Line: v.line, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case e.Seq == v.next:
	case e.Seq > v.next:
		return brk("seq %d where %d was expected: row %d is missing (or rows are out of order)", e.Seq, v.next, v.next)
	default:
		return brk("seq %d where %d was expected: rows are duplicated or out of order", e.Seq, v.next)
	}
	if e.PrevHash != v.prev {
		return brk("prev_hash %s differs from the previous row's hash %s", short(e.PrevHash), short(v.prev))
	}
	h, err := Hash(e)
	if err != nil {
		return brk("%v", err)
	}
	if h != e.Hash {
		return brk("the row's content hashes to %s but its hash field says %s: a value or the hash was changed", short(h), short(e.Hash))
	}
	v.next++
	v.prev = h
	v.count++
	return nil
}

// LastSeq is the seq of the last row checked (first seq - 1 when none).
func (v *Verifier) LastSeq() int64 { return v.next - 1 }

// LastHash is the hash of the last row checked (the starting prev_hash
// when none).
func (v *Verifier) LastHash() string { return v.prev }

// Count is the number of rows checked.
func (v *Verifier) Count() int64 { return v.count }

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "..."
	}
	if h == "" {
		return `""`
	}
	return h
}

// ExportFormat names the export file format in its header line.
const ExportFormat = "starpipe-activity-export"

// Header is the first line of an export: what it covers and the anchor it
// starts from.
type Header struct {
	Format     string `json:"format"`  // ExportFormat
	Version    int    `json:"version"` // 1
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	ExportedAt string `json:"exported_at"`
	FirstSeq   int64  `json:"first_seq"`
	// PrevHash is the hash of row first_seq-1 (GenesisHash when the
	// export starts the chain): the anchor that ties this stretch to the
	// rows before it.
	PrevHash string `json:"prev_hash"`
}

// End is the last line's content: how many rows and the chain's hash after
// the last of them, the anchor the next stretch starts from.
type End struct {
	Count    int64  `json:"count"`
	LastSeq  int64  `json:"last_seq"`
	LastHash string `json:"last_hash"`
}

type endLine struct {
	End *End `json:"end"`
}

// Result is what a verified export or table covers.
type Result struct {
	Header   Header // zero for the live table
	FirstSeq int64
	LastSeq  int64
	Count    int64
	PrevHash string // anchor before the first row
	LastHash string // anchor after the last row
}

// maxLine bounds one line of an export: a row's before and after are
// small documents, never megabytes.
const maxLine = 16 << 20

// VerifyExport reads an export (JSON lines: a Header, one Entry per row
// in chain order, then {"end": End}) and checks it alone: the rows chain
// from the header's prev_hash, and the end line matches the last row. A
// broken chain is a *BreakError naming the first row that breaks it; a
// malformed file is an error naming its line.
func VerifyExport(r io.Reader) (Result, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line := 0
	next := func() ([]byte, bool) {
		for sc.Scan() {
			line++
			if b := bytes.TrimSpace(sc.Bytes()); len(b) > 0 {
				return b, true
			}
		}
		return nil, false
	}
	var res Result
	first, ok := next()
	if !ok {
		if err := sc.Err(); err != nil {
			return res, fmt.Errorf("reading the export: %w", err)
		}
		return res, errors.New("the export is empty: no header line")
	}
	var h Header
	if err := strictDecode(first, &h); err != nil || h.Format != ExportFormat {
		return res, fmt.Errorf("line %d: not a %s header (%v)", line, ExportFormat, err)
	}
	if h.Version != 1 {
		return res, fmt.Errorf("line %d: export format version %d, this verifier reads version 1", line, h.Version)
	}
	if h.FirstSeq < 1 {
		return res, fmt.Errorf("line %d: first_seq %d, want 1 or more", line, h.FirstSeq)
	}
	if h.FirstSeq == 1 && h.PrevHash != GenesisHash {
		return res, fmt.Errorf("line %d: the export starts the chain but its prev_hash is not the genesis hash (64 zeros)", line)
	}
	res.Header, res.FirstSeq, res.PrevHash = h, h.FirstSeq, h.PrevHash
	v := NewVerifier(h.FirstSeq, h.PrevHash)
	for {
		b, ok := next()
		if !ok {
			break
		}
		v.line = line
		var end endLine
		if json.Unmarshal(b, &end) == nil && end.End != nil {
			e := end.End
			if err := strictDecode(b, &endLine{}); err != nil {
				return res, fmt.Errorf("line %d: malformed end line: %v", line, err)
			}
			switch {
			case e.Count != v.Count():
				return res, &BreakError{Seq: v.LastSeq(), Line: line, Reason: fmt.Sprintf("the end line counts %d rows, the export holds %d: rows were removed or added", e.Count, v.Count())}
			case e.LastSeq != v.LastSeq():
				return res, &BreakError{Seq: v.LastSeq(), Line: line, Reason: fmt.Sprintf("the end line names last seq %d, the last row is %d", e.LastSeq, v.LastSeq())}
			case e.LastHash != v.LastHash():
				return res, &BreakError{Seq: v.LastSeq(), Line: line, Reason: fmt.Sprintf("the end line's last_hash %s differs from the last row's hash %s", short(e.LastHash), short(v.LastHash()))}
			}
			if extra, ok := next(); ok {
				_ = extra
				return res, fmt.Errorf("line %d: data after the end line", line)
			}
			if err := sc.Err(); err != nil {
				return res, fmt.Errorf("reading the export: %w", err)
			}
			res.LastSeq, res.Count, res.LastHash = v.LastSeq(), v.Count(), v.LastHash()
			return res, nil
		}
		var e Entry
		if err := strictDecode(b, &e); err != nil {
			return res, &BreakError{Seq: v.next, Line: line, Reason: fmt.Sprintf("the row expected here is not a valid row: %v", err)}
		}
		if err := v.Check(e); err != nil {
			return res, err
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading the export (line %d): %w", line+1, err)
	}
	return res, &BreakError{Seq: v.LastSeq(), Line: line, Reason: "the export ends without its end line: it was cut short"}
}

// strictDecode decodes one JSON object refusing unknown fields, so that a
// renamed key is an error rather than a silently empty field.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}
