package sarif

import (
	"bytes"
	"strings"

	"github.com/starpipe/starpipe/ingest/parse"
)

// sniffLimits keep Sniff cheap on hostile prefixes.
var sniffLimits = parse.Limits{MaxBytes: -1, MaxDepth: 64, MaxString: 1 << 20, MaxResults: -1}

// Sniff reports whether prefix (the first few KB of a file) looks like a
// SARIF log: a top-level JSON object with a "$schema" that mentions sarif,
// or with both "version" and "runs" keys at the top level. It reads only
// the top-level keys, so a nuclei or native JSON report that merely
// contains the word sarif somewhere is not mistaken for one. A prefix cut
// in the middle of a value is fine: Sniff decides on what it has seen.
func Sniff(prefix []byte) bool {
	prefix = bytes.TrimPrefix(prefix, []byte("\xEF\xBB\xBF"))
	d := newLexer(bytes.NewReader(prefix), "", sniffLimits, 0)
	c, ok := d.peek()
	if !ok || c != '{' {
		return false
	}
	d.beginObj()
	var version, runs bool
	for d.objMore() {
		k := d.key()
		if d.err != nil {
			break
		}
		switch string(k) {
		case "$schema":
			if c, ok := d.peek(); ok && c == '"' {
				s := d.str()
				if d.err == nil && bytes.Contains(bytes.ToLower(s), []byte("sarif")) {
					return true
				}
				continue
			}
			d.skip()
		case "version":
			if c, ok := d.peek(); ok && c == '"' {
				s := d.str()
				version = d.err == nil && (strings.HasPrefix(string(s), "2.") || strings.HasPrefix(string(s), "1."))
				continue
			}
			d.skip()
		case "runs":
			c, ok := d.peek()
			runs = ok && (c == '[' || c == 'n')
			if runs && version {
				return true
			}
			// Producers that write "runs" before "version" (gosec) fill the
			// prefix with the runs array, so look inside it: a run object
			// whose keys are SARIF run keys settles it.
			if ok && c == '[' && firstRunLooksSARIF(d) {
				return true
			}
			if d.err != nil {
				return version && runs
			}
		default:
			d.skip()
		}
		if version && runs {
			return true
		}
	}
	return version && runs
}

// firstRunLooksSARIF reads into the runs array and reports whether its
// first element has a key only a SARIF run has. It consumes the array when
// it does not decide.
func firstRunLooksSARIF(d *lexer) bool {
	d.beginArr()
	for d.arrMore() {
		if c, ok := d.peek(); !ok || c != '{' {
			d.skip()
			continue
		}
		d.beginObj()
		for d.objMore() {
			switch string(d.key()) {
			case "tool", "results", "invocations", "originalUriBaseIds", "taxonomies", "artifacts", "columnKind":
				return d.err == nil
			}
			d.skip()
		}
	}
	return false
}
