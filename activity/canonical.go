// Package activity is the hash-chained activity log seen from outside the
// database: the canonical form each row's hash covers, the export file
// that carries a stretch of the chain with its anchors, and the verifier
// that checks an export offline, or the live table, row by row.
//
// # Canonical form
//
// Each row of the log carries hash = lower-case hex SHA-256 of the UTF-8
// bytes of its canonical form, and prev_hash = the hash of the row before
// it in the chain (seq - 1), or 64 "0" characters for the first row. The
// canonical form is the JSON text that PostgreSQL prints for this jsonb
// object (migration 00013: SQL function activity_log_canonical, and the
// same expression in the BEFORE INSERT trigger that sets seq, prev_hash
// and hash; Canonical reproduces it byte for byte):
//
//	{"id": ID, "seq": SEQ, "time": TIME, "actor": ACTOR, "after": AFTER,
//	 "action": ACTION, "before": BEFORE, "run_id": RUN_ID,
//	 "entity_id": ENTITY_ID, "prev_hash": PREV_HASH, "entity_type": ENTITY_TYPE}
//
// (one line; wrapped here). The rules, which are those of PostgreSQL's
// jsonb output and apply at every depth, including inside BEFORE and AFTER:
//
//   - Keys of an object are sorted by their length in bytes, then
//     bytewise; a key appears once.
//   - Members and array elements are separated by ", " (comma, space); a
//     key and its value by ": " (colon, space); no other whitespace. Empty
//     objects and arrays are {} and [].
//   - Strings are quoted with ", and escaped as \" \\ \b \f \n \r \t, other
//     bytes below 0x20 as \u00XX with lower-case hex; everything else,
//     non-ASCII included, is written as its UTF-8 bytes.
//   - Numbers are written as PostgreSQL's numeric prints them; ID and SEQ
//     are plain decimal integers. In an export, the numbers inside BEFORE
//     and AFTER are already in that form and are taken literally.
//   - TIME is the row's time in UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ (RFC
//     3339, always six fractional digits).
//   - RUN_ID is the scan run's UUID in lower case, or null; BEFORE and
//     AFTER are the stored JSON values, or null.
//
// The key order above is simply what the sorting rule gives for these
// keys.
package activity

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the canonical time format: UTC, microseconds, always six
// fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// GenesisHash is the prev_hash of the first row of the chain.
var GenesisHash = strings.Repeat("0", 64)

// Entry is one row of the activity log as the API lists it and an export
// file carries it. Before and After are JSON values (null when none).
type Entry struct {
	Seq        int64           `json:"seq"`
	ID         int64           `json:"id"`
	Time       string          `json:"time"` // TimeLayout
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	EntityType string          `json:"entity_type"`
	EntityID   string          `json:"entity_id"`
	RunID      *string         `json:"run_id"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	PrevHash   string          `json:"prev_hash"`
	Hash       string          `json:"hash"`
}

// FormatTime renders t as the canonical form does.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Canonical returns the bytes e's hash covers (its Hash field is not
// among them). It fails when a field cannot be in the canonical form: a
// time not written as TimeLayout, or Before or After not one JSON value.
func Canonical(e Entry) ([]byte, error) {
	t, err := time.Parse(TimeLayout, e.Time)
	if err != nil || FormatTime(t) != e.Time {
		return nil, fmt.Errorf("time %q is not in the canonical form %s", e.Time, TimeLayout)
	}
	before, err := decodeValue(e.Before)
	if err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	after, err := decodeValue(e.After)
	if err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	var run any
	if e.RunID != nil {
		run = *e.RunID
	}
	obj := map[string]any{
		"id":          json.Number(strconv.FormatInt(e.ID, 10)),
		"seq":         json.Number(strconv.FormatInt(e.Seq, 10)),
		"time":        e.Time,
		"actor":       e.Actor,
		"action":      e.Action,
		"entity_type": e.EntityType,
		"entity_id":   e.EntityID,
		"run_id":      run,
		"before":      before,
		"after":       after,
		"prev_hash":   e.PrevHash,
	}
	var b bytes.Buffer
	writeValue(&b, obj)
	return b.Bytes(), nil
}

// Hash returns the lower-case hex SHA-256 of e's canonical form.
func Hash(e Entry) (string, error) {
	c, err := Canonical(e)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// decodeValue parses one JSON value keeping numbers as written; empty
// input is null.
func decodeValue(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not a JSON value: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// writeValue writes v (as decoded with UseNumber) in PostgreSQL's jsonb
// output form.
func writeValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(string(v))
	case string:
		writeString(b, v)
	case []any:
		b.WriteByte('[')
		for i, el := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeValue(b, el)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// jsonb's order: shorter keys first, then bytewise.
		slices.SortFunc(keys, func(x, y string) int {
			if len(x) != len(y) {
				return len(x) - len(y)
			}
			return strings.Compare(x, y)
		})
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeString(b, k)
			b.WriteString(": ")
			writeValue(b, v[k])
		}
		b.WriteByte('}')
	default:
		// decodeValue produces nothing else; a programming error here
		// must not pass for a valid value.
		fmt.Fprintf(b, "<unsupported %T>", v)
	}
}

// writeString quotes s as PostgreSQL's escape_json does.
func writeString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
				continue
			}
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
