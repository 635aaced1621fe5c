// Package sanitize makes parsed records storable: whatever a scanner wrote,
// every string of a finding or asset that leaves the parse stage is valid
// UTF-8 without NUL (PostgreSQL refuses both in text and jsonb, SQLSTATE
// 22021 and 22P05) and within a length limit (an indexed column over the
// btree row limit fails with 54000; a finding over the broker's message
// limit cannot be published). Without this, one such value fails its batch
// the same way on every retry.
//
// What it does to a string, in this order:
//   - NUL (U+0000) becomes U+FFFD;
//   - every byte that is not part of valid UTF-8 becomes U+FFFD;
//   - a value longer than its limit is cut at a rune boundary and ends in a
//     visible marker, "…[truncated N bytes]", N being the bytes of the
//     original value left out. The output, marker included, is within the
//     limit, so sanitising twice changes nothing.
//
// Fingerprints: parsers compute them from the raw values, before this
// package runs, and it never changes a well-formed one (at most
// Limits.Fingerprint bytes of valid UTF-8 without NUL; starpipe's are 64 hex
// digits). So a finding keeps its identity whatever its message contains,
// and a change of limits here never re-keys stored findings. A malformed
// fingerprint is replaced by the hash of its raw bytes rather than cut, so
// that two different ones cannot become equal.
//
// The raw file stays intact in the artifact store; only the normalised
// records are changed, and a Sanitizer counts what it changed so that the
// run can say so.
package sanitize

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

// Limits are the largest sizes, in bytes, of the strings of a record. Zero
// fields take DefaultLimits' value.
type Limits struct {
	// Scope is a finding's scope. It is the leading column of the findings'
	// unique key and of (scope, tool, status), so together with Identifier
	// it must stay well under the ~2700-byte btree row limit. Intake refuses
	// longer scopes, so findings keep their run's scope.
	Scope int
	// Identifier bounds tool names and versions (tool is indexed with scope
	// and status), fingerprint sources, signal words, CVE ids, asset types.
	Identifier int
	// Fingerprint is the longest fingerprint kept as it is.
	Fingerprint int
	// Name bounds rule ids and names, titles, logical locations,
	// suppression justifications, asset names, and each list item.
	Name int
	// URI bounds a location's URI.
	URI int
	// Text bounds a message and a description.
	Text int
	// ListItems and ListBytes bound each list (tags, references,
	// evidence, CVEs, CWEs, addresses, sources): items kept, and their
	// total bytes.
	ListItems int
	ListBytes int
}

// DefaultLimits keep a finding's identity columns far below the btree row
// limit (scope 2048 + tool 256 bytes) and one finding's JSON below 512 KB
// even when every byte of every field needs a six-byte JSON escape, so a
// findings batch always fits a Kafka message.
func DefaultLimits() Limits {
	return Limits{
		Scope:       2048,
		Identifier:  256,
		Fingerprint: 128,
		Name:        1024,
		URI:         2048,
		Text:        8 << 10,
		ListItems:   64,
		ListBytes:   8 << 10,
	}
}

// WithDefaults fills zero (or negative) fields from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&l.Scope, d.Scope)
	fill(&l.Identifier, d.Identifier)
	fill(&l.Fingerprint, d.Fingerprint)
	fill(&l.Name, d.Name)
	fill(&l.URI, d.URI)
	fill(&l.Text, d.Text)
	fill(&l.ListItems, d.ListItems)
	fill(&l.ListBytes, d.ListBytes)
	return l
}

// Counts say how many values a Sanitizer changed, by reason. One value can
// count under several reasons (a long message with a NUL in it).
type Counts struct {
	NUL         int `json:"nul"`          // values in which NUL became U+FFFD
	InvalidUTF8 int `json:"invalid_utf8"` // values in which invalid UTF-8 became U+FFFD
	Truncated   int `json:"truncated"`    // values cut at their limit, and lists cut short
	Rehashed    int `json:"rehashed"`     // malformed fingerprints replaced by their hash
}

// IsZero reports whether nothing was changed.
func (c Counts) IsZero() bool { return c == Counts{} }

// Sanitizer cleans records and counts what it changed. It is meant for one
// run's parse and is not safe for concurrent use (parsers call their sink
// from one goroutine).
type Sanitizer struct {
	lim Limits
	n   Counts
}

// New returns a Sanitizer with lim (zero fields: defaults).
func New(lim Limits) *Sanitizer {
	return &Sanitizer{lim: lim.WithDefaults()}
}

// Counts returns what was changed so far.
func (s *Sanitizer) Counts() Counts { return s.n }

// Sink returns a sink that sanitises every record before handing it to
// next. A nil callback of next stays nil.
func (s *Sanitizer) Sink(next parse.Sink) parse.Sink {
	out := parse.Sink{}
	if next.Finding != nil {
		out.Finding = func(f *finding.Finding) error {
			s.Finding(f)
			return next.Finding(f)
		}
	}
	if next.Asset != nil {
		out.Asset = func(a *finding.Asset) error {
			s.Asset(a)
			return next.Asset(a)
		}
	}
	return out
}

// Finding sanitises every string of f in place. Kind, severity and the
// fields scoring and mapping set later are not input and are left alone.
func (s *Sanitizer) Finding(f *finding.Finding) {
	l := &s.lim
	f.Fingerprint = s.fingerprint(f.Fingerprint)
	f.FingerprintSource = s.String(f.FingerprintSource, l.Identifier)
	f.Scope = s.String(f.Scope, l.Scope)
	f.Tool = s.String(f.Tool, l.Identifier)
	f.ToolVersion = s.String(f.ToolVersion, l.Identifier)
	f.RuleID = s.String(f.RuleID, l.Name)
	f.RuleName = s.String(f.RuleName, l.Name)
	f.Title = s.String(f.Title, l.Name)
	f.Message = s.String(f.Message, l.Text)
	f.Description = s.String(f.Description, l.Text)
	f.Location.Kind = finding.LocationKind(s.String(string(f.Location.Kind), l.Identifier))
	f.Location.URI = s.String(f.Location.URI, l.URI)
	f.Location.Logical = s.String(f.Location.Logical, l.Name)
	f.CWE = s.ints(f.CWE)
	f.CVE = s.list(f.CVE, l.Identifier)
	f.Tags = s.list(f.Tags, l.Name)
	f.References = s.list(f.References, l.Name)
	f.Evidence = s.list(f.Evidence, l.Name)
	f.Signals.Vector = s.String(f.Signals.Vector, l.Identifier)
	f.Signals.Label = s.String(f.Signals.Label, l.Identifier)
	f.Signals.Level = s.String(f.Signals.Level, l.Identifier)
	f.Justification = s.String(f.Justification, l.Name)
}

// Asset sanitises every string of a in place.
func (s *Sanitizer) Asset(a *finding.Asset) {
	l := &s.lim
	a.Type = finding.AssetType(s.String(string(a.Type), l.Identifier))
	a.Value = s.String(a.Value, l.Name)
	a.Domain = s.String(a.Domain, l.Name)
	a.Addresses = s.list(a.Addresses, l.Name)
	a.Netblock = s.String(a.Netblock, l.Identifier)
	a.Description = s.String(a.Description, l.Name)
	a.Sources = s.list(a.Sources, l.Name)
}

// Tools sanitises the tool names of a parse's statistics exactly as
// Finding sanitises a finding's tool (reconciliation matches the two), and
// keeps them sorted and unique.
func (s *Sanitizer) Tools(tools []string) []string {
	if len(tools) == 0 {
		return tools
	}
	out := make([]string, len(tools))
	for i, t := range tools {
		out[i] = s.String(t, s.lim.Identifier)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// String returns v made storable within max bytes and counts what changed.
func (s *Sanitizer) String(v string, max int) string {
	out, ch := clean(v, max)
	s.count(ch)
	return out
}

func (s *Sanitizer) count(ch change) {
	if ch.nul {
		s.n.NUL++
	}
	if ch.invalid {
		s.n.InvalidUTF8++
	}
	if ch.truncated {
		s.n.Truncated++
	}
}

// fingerprint keeps a well-formed fingerprint and replaces any other by
// the hash of its raw bytes: cutting could make two fingerprints equal.
func (s *Sanitizer) fingerprint(v string) string {
	if len(v) <= s.lim.Fingerprint && storable(v) {
		return v
	}
	s.n.Rehashed++
	return finding.Fingerprint("malformed-fingerprint", v)
}

// list sanitises each item within item bytes, keeping at most ListItems
// items and ListBytes bytes in all.
func (s *Sanitizer) list(xs []string, item int) []string {
	if len(xs) > s.lim.ListItems {
		xs = xs[:s.lim.ListItems]
		s.n.Truncated++
	}
	total := 0
	for i := range xs {
		xs[i] = s.String(xs[i], item)
		total += len(xs[i])
		if total > s.lim.ListBytes {
			xs = xs[:i]
			s.n.Truncated++
			break
		}
	}
	return xs
}

func (s *Sanitizer) ints(xs []int) []int {
	if len(xs) > s.lim.ListItems {
		s.n.Truncated++
		return xs[:s.lim.ListItems]
	}
	return xs
}

// Text returns v made storable within max bytes (max <= 0: no length
// limit), without counting: for error texts and names outside a run's
// records.
func Text(v string, max int) string {
	out, _ := clean(v, max)
	return out
}

// Valid reports whether v can be stored as it is: valid UTF-8 without NUL.
func Valid(v string) bool { return storable(v) }

func storable(v string) bool {
	return strings.IndexByte(v, 0) < 0 && utf8.ValidString(v)
}

// change says why clean changed a value.
type change struct{ nul, invalid, truncated bool }

// A cut value ends in markerPrefix, the number of bytes of the original
// value left out, and markerSuffix.
const markerPrefix, markerSuffix = "…[truncated ", " bytes]"

func marker(n int) string { return markerPrefix + strconv.Itoa(n) + markerSuffix }

// clean replaces NUL and invalid UTF-8 with U+FFFD and cuts the result to
// max bytes (max <= 0: no limit) at a rune boundary, ending a cut value in
// a marker when the marker fits.
func clean(v string, max int) (string, change) {
	var ch change
	ch.nul = strings.IndexByte(v, 0) >= 0
	ch.invalid = !utf8.ValidString(v)
	if max <= 0 {
		max = int(^uint(0) >> 1)
	}
	if !ch.nul && !ch.invalid && len(v) <= max {
		return v, ch
	}
	// Room for the text before the marker: the marker is longest when
	// the most bytes are left out, i.e. all of them.
	keep := max - len(marker(len(v)))
	withMarker := keep >= 0
	if !withMarker {
		keep = max
	}
	var b strings.Builder
	b.Grow(min(len(v), max))
	cutOut, cutRaw := -1, 0 // the last rune boundary within keep
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == 0 || (r == utf8.RuneError && size == 1) {
			r = utf8.RuneError
		}
		if b.Len() <= keep {
			cutOut, cutRaw = b.Len(), i
		}
		if b.Len()+utf8.RuneLen(r) > max {
			ch.truncated = true
			break
		}
		b.WriteRune(r)
		i += size
	}
	if !ch.truncated {
		return b.String(), ch
	}
	// The loop stopped before a rune that would not fit; the last
	// boundary within keep was recorded on the way.
	out := b.String()[:cutOut]
	if withMarker {
		out += marker(len(v) - cutRaw)
	}
	return out, ch
}
