package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/starpipe/starpipe/ingest/amass"
	"github.com/starpipe/starpipe/ingest/internal/jsonsniff"
	"github.com/starpipe/starpipe/ingest/nuclei"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/ingest/sarif"
)

// detectFile is the file name Detect puts in its errors; ParseFile and
// ParseReader replace it with the real name.
const detectFile = "input"

// Detect decides the format of a file from its first bytes (at most
// SniffSize of them), never from its name. It skips a UTF-8 byte order
// mark and leading whitespace. Empty input is FormatEmpty. Input in no
// supported format gives a *parse.Error (wrapping parse.ErrFormat) that says
// what the content looks like and, for known native reports, how to get
// SARIF from that tool instead.
func Detect(prefix []byte) (Format, error) {
	if bytes.HasPrefix(prefix, []byte(amass.SQLiteMagic)) {
		return FormatAmass, nil
	}
	b := jsonsniff.TrimLeft(prefix)
	if len(b) == 0 {
		return FormatEmpty, nil
	}
	switch b[0] {
	case '{', '[':
		first := jsonsniff.Describe(b)
		switch {
		case sarif.Sniff(b) || looksSARIF(first):
			return FormatSARIF, nil
		case nuclei.Sniff(b):
			return FormatNuclei, nil
		case amass.Sniff(b):
			return FormatAmass, nil
		}
		return "", unsupported("%s", describeJSON(first))
	case 'n':
		if bytes.HasPrefix(b, []byte("null")) {
			return "", unsupported("JSON null (gitleaks and old trivy write this when they find nothing; neither native format is supported, export SARIF instead)")
		}
	case '<':
		return "", unsupported("XML or HTML content; export SARIF (or nuclei JSONL) instead")
	}
	if bytes.HasPrefix(b, []byte("SQLite format 3")) {
		return FormatAmass, nil
	}
	if isBinary(b) {
		return "", unsupported("binary content that is not an Amass SQLite database")
	}
	if amass.Sniff(b) {
		return FormatAmass, nil
	}
	if b[0] == '"' || b[0] == '-' || (b[0] >= '0' && b[0] <= '9') || bytes.HasPrefix(b, []byte("true")) || bytes.HasPrefix(b, []byte("false")) {
		return "", unsupported("a JSON scalar, not an object or array")
	}
	line := b
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	return "", unsupported("text whose first line is not an Amass graph line (`name (FQDN) --> a_record --> addr (IPAddress)`): %q", shorten(string(bytes.TrimSpace(line)), 80))
}

func unsupported(format string, args ...any) *parse.Error {
	return &parse.Error{File: detectFile, Offset: -1,
		Err: fmt.Errorf("not a supported format: "+format+": %w", append(args, parse.ErrFormat)...)}
}

// looksSARIF widens sarif.Sniff: an object with a "runs" key (even without
// "version") or a "$schema" naming SARIF. Both are read before any syntax
// error later in the file, so broken SARIF still goes to the SARIF parser,
// which says what is wrong with it better than "not a supported format".
func looksSARIF(f jsonsniff.First) bool {
	if f.Kind != '{' || f.InArray {
		return false
	}
	if f.Has("runs") {
		return true
	}
	return strings.Contains(strings.ToLower(f.Strings["$schema"]), "sarif")
}

// native describes a report format starpipe does not read, and how to get
// SARIF from the same tool.
type native struct {
	tool  string
	match func(jsonsniff.First) bool
	hint  string
}

func obj(keys ...string) func(jsonsniff.First) bool {
	return func(f jsonsniff.First) bool {
		if f.Kind != '{' || f.InArray {
			return false
		}
		for _, k := range keys {
			if !f.Has(k) {
				return false
			}
		}
		return true
	}
}

func elem(keys ...string) func(jsonsniff.First) bool {
	return func(f jsonsniff.First) bool {
		if !f.InArray {
			return false
		}
		for _, k := range keys {
			if !f.Has(k) {
				return false
			}
		}
		return true
	}
}

// natives are checked in order; the more specific patterns come first.
var natives = []native{
	{"trivy", obj("SchemaVersion"), "export SARIF with `trivy -f sarif`"},
	{"trivy", obj("ArtifactName", "Results"), "export SARIF with `trivy -f sarif`"},
	{"legacy trivy", elem("Target", "Vulnerabilities"), "export SARIF with `trivy -f sarif`"},
	{"OWASP ZAP", obj("site", "@version"), "export SARIF with ZAP's `sarif-json` report template"},
	{"grype", obj("matches"), "export SARIF with `grype -o sarif`"},
	{"gosec", obj("Issues"), "export SARIF with `gosec -fmt sarif`"},
	{"KICS", obj("queries"), "export SARIF with `kics scan --report-formats sarif`"},
	{"checkov", obj("check_type"), "export SARIF with `checkov -o sarif`"},
	{"bandit", obj("results", "metrics"), "export SARIF with `bandit -f sarif` (bandit-sarif-formatter)"},
	{"semgrep", obj("results", "errors"), "export SARIF with `semgrep --sarif`"},
	{"tfsec", obj("results"), "export SARIF with `tfsec --format sarif`"},
	{"gitleaks", elem("RuleID", "Secret"), "export SARIF with `gitleaks --report-format sarif`"},
	{"hadolint", elem("code", "level", "file"), "export SARIF with `hadolint -f sarif`"},
	{"ESLint", elem("filePath", "messages"), "export SARIF with `eslint -f @microsoft/eslint-formatter-sarif`"},
}

// describeJSON explains why a JSON prefix is none of the supported formats.
func describeJSON(f jsonsniff.First) string {
	what := "JSON object"
	switch {
	case f.InArray:
		what = "JSON array of objects"
	case f.Kind == '[' && f.Elem == 0:
		what = "empty JSON array (or one cut short)"
	case f.Kind == '[':
		what = "JSON array of non-objects"
	}
	msg := what + ` without SARIF "runs" or nuclei "template-id" keys`
	if f.Kind == '{' && len(f.Keys) == 0 {
		msg = "JSON object with no readable keys (syntax error or truncated)"
	}
	for _, n := range natives {
		if n.match(f) {
			return fmt.Sprintf("%s (%s native JSON is not supported; %s)", msg, n.tool, n.hint)
		}
	}
	if len(f.Keys) > 0 {
		keys := f.Keys
		if len(keys) > 8 {
			keys = keys[:8]
		}
		msg += fmt.Sprintf(" (keys: %s)", strings.Join(keys, ", "))
	}
	return msg
}

// isBinary reports control bytes or invalid UTF-8 in the first 512 bytes.
func isBinary(b []byte) bool {
	if len(b) > 512 {
		b = b[:512]
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') {
			return true
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			// A rune cut by the 512-byte window is not binary.
			if len(b)-i < utf8.UTFMax {
				return false
			}
			return true
		}
		i += size
	}
	return false
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
