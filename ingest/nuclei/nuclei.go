// Package nuclei reads ProjectDiscovery nuclei output and turns each result
// event into a starpipe finding.
//
// It accepts every shape nuclei has written: -jsonl (one object per line,
// blank lines allowed), -json-export (a JSON array), a lone object, legacy
// 2.x records (templateID, matched, matcher_name, extracted_results) and
// zero-byte files (nuclei writes nothing when it found nothing).
//
// Raw request, response and curl-command fields are never decoded, let alone
// copied into a finding: they carry the headers nuclei sent, credentials
// included. The base64 template (template-encoded) and template variables
// (meta, which hold tried passwords) are dropped for the same reasons.
package nuclei

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/internal/jsonsniff"
	"github.com/starpipe/starpipe/ingest/parse"
)

// Tool is the tool name stamped on findings.
const Tool = "nuclei"

// Sniff reports whether prefix (the start of a file) looks like nuclei
// output: the first object, or the first element of a top-level array, has a
// template-id (or legacy templateID) key at its top level.
func Sniff(prefix []byte) bool {
	f := jsonsniff.Describe(prefix)
	return f.HasAny("template-id", "templateID")
}

// record holds the fields starpipe uses. Everything else, in particular
// request, response, curl-command, template-encoded and meta, is skipped by
// encoding/json without being stored.
type record struct {
	TemplateID       flexString `json:"template-id"`
	LegacyTemplateID flexString `json:"templateID"`
	Info             *info      `json:"info"`
	Type             flexString `json:"type"`
	Host             flexString `json:"host"`
	MatchedAt        flexString `json:"matched-at"`
	LegacyMatched    flexString `json:"matched"`
	MatcherName      flexString `json:"matcher-name"`
	LegacyMatcher    flexString `json:"matcher_name"`
	ExtractorName    flexString `json:"extractor-name"`
	LegacyExtractor  flexString `json:"extractor_name"`
	Extracted        stringList `json:"extracted-results"`
	LegacyExtracted  stringList `json:"extracted_results"`
	Timestamp        flexString `json:"timestamp"`
	MatcherStatus    flexString `json:"matcher-status"`
}

type info struct {
	Name           flexString      `json:"name"`
	Severity       flexString      `json:"severity"`
	Description    flexString      `json:"description"`
	Reference      stringList      `json:"reference"`
	Tags           stringList      `json:"tags"`
	Classification *classification `json:"classification"`
}

type classification struct {
	CVE         stringList `json:"cve-id"`
	CWE         stringList `json:"cwe-id"`
	CVSSMetrics flexString `json:"cvss-metrics"`
	CVSSScore   flexFloat  `json:"cvss-score"`
	EPSSScore   flexFloat  `json:"epss-score"`
}

// Parse reads nuclei output from r and sends one finding per result event
// to sink.Finding. Every error it returns for bad input is a *parse.Error
// naming opt.File and the line and byte offset.
func Parse(ctx context.Context, r io.Reader, opt parse.Options, sink parse.Sink) (parse.Stats, error) {
	// nuclei is named even when the file holds no result: a clean rescan
	// closes nuclei's earlier findings.
	st := parse.Stats{Tools: []string{Tool}}
	lim := opt.Limits.WithDefaults()
	kind := opt.Kind
	if kind == "" {
		kind = finding.KindExternal
	}
	rr := newRecordReader(parse.LimitReader(r, lim.MaxBytes), opt.File, lim)
	for {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("%s: %w", opt.File, err)
		}
		raw, line, off, err := rr.next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		st.Runs++
		var rec record
		if err := json.Unmarshal(raw, &rec); err != nil {
			return st, decodeError(opt.File, rr, line, off, err)
		}
		if strings.TrimSpace(string(rec.MatcherStatus)) == "false" {
			// nuclei -matcher-status also reports templates that did not
			// match; those are results but not findings.
			st.NotFindings++
			continue
		}
		f, err := convert(&rec, kind, opt.Scope)
		if err != nil {
			return st, &parse.Error{File: opt.File, Line: line, Offset: off, Err: err}
		}
		if lim.MaxResults >= 0 && st.Findings >= lim.MaxResults {
			return st, &parse.Error{File: opt.File, Line: line, Offset: off,
				Err: fmt.Errorf("more than %d results: %w", lim.MaxResults, parse.ErrLimit)}
		}
		st.Findings++
		if sink.Finding != nil {
			if err := sink.Finding(f); err != nil {
				return st, fmt.Errorf("%s:%d: %w", opt.File, line, err)
			}
		}
	}
}

// decodeError places an encoding/json error at its line and offset in the
// file, mapping the offset in the spliced record back to the original.
func decodeError(file string, rr *recordReader, line int, off int64, err error) *parse.Error {
	var at int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		at = se.Offset
	case errors.As(err, &te):
		at = te.Offset
	}
	if at >= 0 {
		at = rr.origOffset(at)
		if at <= int64(len(rr.orig)) {
			line += bytes.Count(rr.orig[:at], []byte{'\n'})
			off += at
		}
	}
	return &parse.Error{File: file, Line: line, Offset: off, Err: fmt.Errorf("nuclei record: %v: %w", err, parse.ErrFormat)}
}

// convert builds the finding for one record.
func convert(rec *record, kind finding.ScanKind, scope string) (*finding.Finding, error) {
	templateID := strings.TrimSpace(string(first(rec.TemplateID, rec.LegacyTemplateID)))
	if templateID == "" {
		return nil, fmt.Errorf("record has no template-id (or legacy templateID): not a nuclei result: %w", parse.ErrFormat)
	}
	matcher := strings.TrimSpace(string(first(rec.MatcherName, rec.LegacyMatcher)))
	extractor := strings.TrimSpace(string(first(rec.ExtractorName, rec.LegacyExtractor)))
	extracted := rec.Extracted
	if len(extracted) == 0 {
		extracted = rec.LegacyExtracted
	}

	matched := strings.TrimSpace(string(first(rec.MatchedAt, rec.LegacyMatched)))
	if matched == "" {
		matched = strings.TrimSpace(string(rec.Host))
	}
	tgt := parseTarget(matched)

	f := &finding.Finding{
		FingerprintSource: "computed",
		Scope:             scope,
		Kind:              kind,
		Tool:              Tool,
		RuleID:            templateID,
		Title:             templateID,
		Location:          finding.Location{Kind: tgt.kind, URI: tgt.uri},
		Evidence:          evidence(matcher, extractor, extracted),
	}
	if f.Scope == "" {
		f.Scope = tgt.base
	}
	if matcher != "" {
		f.RuleID += ":" + matcher
	}
	if in := rec.Info; in != nil {
		if name := strings.TrimSpace(string(in.Name)); name != "" {
			f.Title = name
			f.RuleName = name
		}
		f.Description = strings.TrimSpace(string(in.Description))
		f.Signals.Label = strings.ToLower(strings.TrimSpace(string(in.Severity)))
		f.Tags = splitTags(in.Tags)
		f.References = splitReferences(in.Reference)
		if c := in.Classification; c != nil {
			f.CVE = normCVEs(c.CVE)
			f.CWE = normCWEs(c.CWE)
			f.Signals.Vector = strings.TrimSpace(string(c.CVSSMetrics))
			f.Signals.Score = c.CVSSScore.ptr()
			f.Signals.EPSS = c.EPSSScore.ptr()
		}
	}
	// CVE templates are named after their CVE; some (such as the log4shell
	// one) carry no classification, so the id is the only place it is.
	if id := strings.ToUpper(templateID); cveRE.MatchString(id) && !slices.Contains(f.CVE, id) {
		f.CVE = append(f.CVE, id)
		slices.Sort(f.CVE)
	}
	if ts := strings.TrimSpace(string(rec.Timestamp)); ts != "" {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			f.SeenAt = t.UTC()
		}
	}
	f.Fingerprint = fingerprint(templateID, matcher, extractor, tgt.norm, extracted)
	return f, nil
}

// fingerprint identifies a result across runs. It uses only what names the
// issue and the endpoint: never the timestamp, IP, curl command or raw
// request/response, which change from run to run. The normalised target
// keeps results on different endpoints apart (DefectDojo #12397 merged
// them), and sorting the extracted values makes their order irrelevant.
func fingerprint(templateID, matcher, extractor, target string, extracted []string) string {
	var fp finding.Fingerprinter
	fp.Add("tool", Tool).
		Add("template-id", templateID).
		Add("matcher", matcher).
		Add("extractor", extractor).
		Add("target", target)
	vals := slices.Clone(extracted)
	for i, v := range vals {
		vals[i] = strings.TrimSpace(v)
	}
	slices.Sort(vals)
	vals = slices.Compact(vals)
	for _, v := range vals {
		fp.Add("extracted", v)
	}
	return fp.Sum()
}

func first(a, b flexString) flexString {
	if strings.TrimSpace(string(a)) != "" {
		return a
	}
	return b
}

// target is a matched location in its three forms.
type target struct {
	kind finding.LocationKind
	uri  string // what is shown: the value as nuclei wrote it, minus any user:password
	norm string // what is fingerprinted
	base string // scheme://host[:port] for URLs, the host for host[:port]
}

var defaultPorts = map[string]string{"http": "80", "https": "443", "ws": "80", "wss": "443", "ftp": "21"}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// parseTarget normalises matched-at: scheme and host lower-cased, default
// ports and user info removed, empty path as "/", query parameters sorted,
// fragment dropped. Values without a scheme are host or host:port.
func parseTarget(s string) target {
	if s == "" {
		return target{}
	}
	if schemeRE.MatchString(s) {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			scheme := strings.ToLower(u.Scheme)
			host := strings.ToLower(u.Hostname())
			port := u.Port()
			if port == defaultPorts[scheme] {
				port = ""
			}
			hostport := host
			switch {
			case port != "":
				hostport = net.JoinHostPort(host, port)
			case strings.Contains(host, ":"):
				hostport = "[" + host + "]"
			}
			base := scheme + "://" + hostport
			path := u.EscapedPath()
			if path == "" {
				path = "/"
			}
			norm := base + path
			if q := sortQuery(u.RawQuery); q != "" {
				norm += "?" + q
			}
			uri := s
			if u.User != nil {
				u.User = nil
				uri = u.String()
			}
			return target{kind: finding.LocationURL, uri: uri, norm: norm, base: base}
		}
		// Unparseable URL: still a URL, compared as lower-cased text.
		l := strings.ToLower(s)
		return target{kind: finding.LocationURL, uri: s, norm: l, base: l}
	}
	l := strings.ToLower(s)
	host := l
	if h, _, err := net.SplitHostPort(l); err == nil {
		host = h
	}
	return target{kind: finding.LocationHost, uri: s, norm: l, base: host}
}

// sortQuery orders query parameters without decoding them, so that
// "?b=2&a=1" and "?a=1&b=2" are one endpoint.
func sortQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' })
	slices.Sort(parts)
	return strings.Join(parts, "&")
}

// Evidence bounds: findings travel in Kafka batches and database rows, so
// evidence stays short; the raw output is kept as an artifact.
const (
	maxEvidenceItem  = 256
	maxExtractedKept = 10
)

func evidence(matcher, extractor string, extracted []string) []string {
	var ev []string
	if matcher != "" {
		ev = append(ev, "matcher: "+truncate(matcher, maxEvidenceItem))
	}
	if extractor != "" {
		ev = append(ev, "extractor: "+truncate(extractor, maxEvidenceItem))
	}
	n := 0
	for _, v := range extracted {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if n == maxExtractedKept {
			ev = append(ev, fmt.Sprintf("(%d more extracted values)", countNonEmpty(extracted)-n))
			break
		}
		ev = append(ev, "extracted: "+truncate(v, maxEvidenceItem))
		n++
	}
	return ev
}

func countNonEmpty(vs []string) int {
	n := 0
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			n++
		}
	}
	return n
}

// truncate cuts s to at most max bytes on a UTF-8 boundary.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// splitTags accepts both the 2.x comma-separated string and the array form.
func splitTags(in stringList) []string {
	var out []string
	for _, s := range in {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// splitReferences accepts an array, a single URL, or the YAML-list text
// ("- http://a\n- http://b") that some 2.x templates produced.
func splitReferences(in stringList) []string {
	var out []string
	for _, s := range in {
		for _, r := range strings.Split(s, "\n") {
			r = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(r), "- "))
			if r != "" && !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

var cveRE = regexp.MustCompile(`^CVE-\d{4}-\d{4,}$`)

// normCVEs upper-cases ids (nuclei writes "cve-2021-44228"), drops what is
// not a CVE id, and sorts.
func normCVEs(in stringList) []string {
	var out []string
	for _, s := range in {
		for _, c := range strings.Split(s, ",") {
			c = strings.ToUpper(strings.TrimSpace(c))
			if cveRE.MatchString(c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// normCWEs turns "cwe-79" (or "CWE-79", "79") into 79 and drops values that
// are not CWE ids, such as NVD's "nvd-cve-other".
func normCWEs(in stringList) []int {
	var out []int
	for _, s := range in {
		for _, c := range strings.Split(s, ",") {
			c = strings.TrimSpace(c)
			if len(c) > 4 && strings.EqualFold(c[:4], "cwe-") {
				c = c[4:]
			}
			n, err := strconv.Atoi(c)
			if err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// flexString accepts a JSON string, number, boolean or null, because
// nuclei's fields changed type between versions and templates.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case 'n':
		*s = ""
	case '{', '[':
		return fmt.Errorf("expected a string, got %s", jsonKind(b[0]))
	default:
		*s = flexString(b)
	}
	return nil
}

// stringList accepts a string, an array of scalars, or null.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '[':
		var raw []flexString
		if err := json.Unmarshal(b, &raw); err != nil {
			return err
		}
		out := make([]string, 0, len(raw))
		for _, v := range raw {
			if v != "" {
				out = append(out, string(v))
			}
		}
		*l = out
	case '{':
		return fmt.Errorf("expected a string or array, got an object")
	default:
		var v flexString
		if err := v.UnmarshalJSON(b); err != nil {
			return err
		}
		if v != "" {
			*l = stringList{string(v)}
		} else {
			*l = nil
		}
	}
	return nil
}

// flexFloat accepts a number, a numeric string or null; anything else (and
// NaN or infinities) is treated as absent rather than failing the file.
type flexFloat struct {
	v  float64
	ok bool
}

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*f = flexFloat{}
	if v, err := strconv.ParseFloat(strings.TrimSpace(string(s)), 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
		*f = flexFloat{v: v, ok: true}
	}
	return nil
}

func (f flexFloat) ptr() *float64 {
	if !f.ok {
		return nil
	}
	v := f.v
	return &v
}

func jsonKind(c byte) string {
	if c == '{' {
		return "an object"
	}
	return "an array"
}
