package finding

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// Fingerprinter builds a stable identity for a finding from ordered fields.
// Each field is length-prefixed so that ("ab","c") and ("a","bc") differ.
// Callers must feed fields that do not move with unrelated data: the rule,
// the normalised location and normalised evidence, never timestamps, run ids,
// line-ending noise or map iteration order.
type Fingerprinter struct {
	h   [sha256.Size]byte
	buf []byte
}

// Add appends a labelled field.
func (f *Fingerprinter) Add(label, value string) *Fingerprinter {
	f.buf = binary.AppendUvarint(f.buf, uint64(len(label)))
	f.buf = append(f.buf, label...)
	f.buf = binary.AppendUvarint(f.buf, uint64(len(value)))
	f.buf = append(f.buf, value...)
	return f
}

// Sum returns the hex SHA-256 of the fields added so far.
func (f *Fingerprinter) Sum() string {
	f.h = sha256.Sum256(f.buf)
	return hex.EncodeToString(f.h[:])
}

// Fingerprint is a convenience for labelled pairs: Fingerprint("rule", r, "uri", u).
func Fingerprint(pairs ...string) string {
	var f Fingerprinter
	for i := 0; i+1 < len(pairs); i += 2 {
		f.Add(pairs[i], pairs[i+1])
	}
	return f.Sum()
}

// ToolFingerprint turns a tool-provided fingerprint (name and value, e.g.
// SARIF's "primaryLocationLineHash/v1") into starpipe's form, namespaced by
// tool so that two tools never collide.
func ToolFingerprint(tool, name, value string) string {
	return Fingerprint("tool", strings.ToLower(tool), "name", name, "value", value)
}
