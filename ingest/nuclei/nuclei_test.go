package nuclei

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/internal/corpus"
)

var update = flag.Bool("update", false, "rewrite golden files")

// corpusDir is the nuclei part of the shared scanner-output corpus (see
// internal/corpus and the corpus's README.md).
func corpusDir(t testing.TB) string {
	t.Helper()
	return corpus.Path(t, "nuclei", "nuclei")
}

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseAll(t testing.TB, data []byte, opt parse.Options) ([]*finding.Finding, parse.Stats, error) {
	t.Helper()
	var out []*finding.Finding
	st, err := Parse(context.Background(), bytes.NewReader(data), opt, parse.Sink{
		Finding: func(f *finding.Finding) error { out = append(out, f); return nil },
	})
	return out, st, err
}

func mustParse(t testing.TB, data []byte) []*finding.Finding {
	t.Helper()
	fs, _, err := parseAll(t, data, parse.Options{File: "test"})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fs
}

func fingerprints(fs []*finding.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Fingerprint)
	}
	sort.Strings(out)
	return out
}

// Golden files pin the normalised output of a representative subset: JSONL
// with request/response and classification, -json-export, legacy 2.x,
// a DNS result without port, and a network result with host:port.
func TestGolden(t *testing.T) {
	for _, name := range []string{
		"dd-many-findings-new.json",
		"dd-multiple-v3-export.json",
		"dd-many-findings-legacy.json",
		"scb-hostname-without-port.jsonl",
		"scb-log4shell.jsonl",
		"prismatic-exposure.json",
		"dd-invalid-cwe.json",
	} {
		t.Run(name, func(t *testing.T) {
			fs := mustParse(t, readCorpus(t, name))
			got, err := json.MarshalIndent(fs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, filepath.Ext(name))+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update and review the diff)\ngot:\n%s", golden, got)
			}
		})
	}
}

// No secret-bearing field ever reaches a finding.
func TestDropsRawRequestResponse(t *testing.T) {
	rec := `{"template-id":"t","info":{"name":"n","severity":"high"},"host":"https://a.example",` +
		`"matched-at":"https://user:hunter2@a.example/x","request":"GET / HTTP/1.1\r\nAuthorization: Bearer SECRET-TOKEN\r\n",` +
		`"response":"HTTP/1.1 200 OK\r\nSet-Cookie: session=SECRET-COOKIE","curl-command":"curl -H 'Authorization: Bearer SECRET-TOKEN'",` +
		`"template-encoded":"aWQ6IHQ=","meta":{"password":"SECRET-PASS"}}`
	fs := mustParse(t, []byte(rec))
	b, _ := json.Marshal(fs)
	for _, s := range []string{"SECRET", "hunter2", "aWQ6IHQ=", "Authorization"} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("finding contains %q: %s", s, b)
		}
	}
	if got := fs[0].Location.URI; got != "https://a.example/x" {
		t.Errorf("location %q, want user info stripped", got)
	}
}

func TestFields(t *testing.T) {
	rec := `{"template-id":"CVE-2021-1","template-path":"/x/t.yaml","matcher-name":"m1","extractor-name":"e1",` +
		`"extracted-results":["b","a"],"type":"http","ip":"1.2.3.4","timestamp":"2024-01-02T03:04:05.5+02:00",` +
		`"host":"https://Example.com","matched-at":"HTTPS://Example.COM:443/p?b=2&a=1",` +
		`"info":{"name":"Title","severity":"CRITICAL","description":"d","reference":"https://r","tags":"a, b,a",` +
		`"classification":{"cve-id":"cve-2021-0001","cwe-id":["cwe-79","CWE-89","nvd-cwe-other"],` +
		`"cvss-metrics":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","cvss-score":"9.8","epss-score":0.5}}}`
	f := mustParse(t, []byte(rec))[0]
	check := func(name string, got, want any) {
		t.Helper()
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Errorf("%s = %s, want %s", name, gb, wb)
		}
	}
	check("RuleID", f.RuleID, "CVE-2021-1:m1")
	check("Title", f.Title, "Title")
	check("Kind", f.Kind, finding.KindExternal)
	check("Scope", f.Scope, "https://example.com")
	check("Location", f.Location, finding.Location{Kind: finding.LocationURL, URI: "HTTPS://Example.COM:443/p?b=2&a=1"})
	check("CVE", f.CVE, []string{"CVE-2021-0001"})
	check("CWE", f.CWE, []int{79, 89})
	check("Tags", f.Tags, []string{"a", "b"})
	check("References", f.References, []string{"https://r"})
	check("Label", f.Signals.Label, "critical")
	check("Vector", f.Signals.Vector, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
	check("Score", f.Signals.Score, 9.8)
	check("EPSS", f.Signals.EPSS, 0.5)
	check("SeenAt", f.SeenAt.Format("2006-01-02T15:04:05.0Z07:00"), "2024-01-02T01:04:05.5Z")
	check("Evidence", f.Evidence, []string{"matcher: m1", "extractor: e1", "extracted: b", "extracted: a"})

	// Options override kind and scope.
	fs, _, err := parseAll(t, []byte(rec), parse.Options{File: "x", Kind: finding.KindAuthenticated, Scope: "app"})
	if err != nil {
		t.Fatal(err)
	}
	check("Kind(opt)", fs[0].Kind, finding.KindAuthenticated)
	check("Scope(opt)", fs[0].Scope, "app")
}

// nuclei -matcher-status reports failed matches too: not findings.
func TestMatcherStatusFalse(t *testing.T) {
	in := `{"template-id":"a","matcher-status":true}` + "\n" + `{"template-id":"b","matcher-status":false}` + "\n" + `{"template-id":"c"}`
	fs, st, err := parseAll(t, []byte(in), parse.Options{File: "f"})
	if err != nil || len(fs) != 2 || st.Findings != 2 || st.NotFindings != 1 || st.Runs != 3 {
		t.Errorf("got %d findings, stats %+v, err %v", len(fs), st, err)
	}
}

func TestHostLocation(t *testing.T) {
	f := mustParse(t, []byte(`{"templateID":"ssh","matched":"Nuclei-Example.com:22","host":"https://nuclei-example.com","info":{"severity":"low"}}`))[0]
	if f.Location.Kind != finding.LocationHost || f.Location.URI != "Nuclei-Example.com:22" || f.Scope != "nuclei-example.com" {
		t.Errorf("got location %+v scope %q", f.Location, f.Scope)
	}
	if f.Title != "ssh" {
		t.Errorf("title %q, want template id when info.name is missing", f.Title)
	}
}

// The shapes nuclei writes all parse, and to the same findings.
func TestShapes(t *testing.T) {
	a := `{"template-id":"a","matched-at":"https://x.example/1","info":{"name":"A"}}`
	b := `{"template-id":"b","matched-at":"https://x.example/2","info":{"name":"B"}}`
	want := fingerprints(mustParse(t, []byte(a+"\n"+b+"\n")))
	for name, in := range map[string]string{
		"jsonl-crlf-blank":  "\r\n" + a + "\r\n\r\n" + b + "\r\n\n",
		"no-newline":        a + "\n" + b,
		"array":             "[" + a + ",\n" + b + "]",
		"array-pretty":      "[\n  " + strings.ReplaceAll(a, ",", ",\n    ") + ",\n  " + b + "\n]\n",
		"bom":               "\xef\xbb\xbf" + a + "\n" + b,
		"concatenated":      a + b,
		"multiline-objects": strings.ReplaceAll(a, ",", ",\n") + "\n" + strings.ReplaceAll(b, `":`, "\" :\n "),
	} {
		got := fingerprints(mustParse(t, []byte(in)))
		if !slices.Equal(got, want) {
			t.Errorf("%s: fingerprints %v, want %v", name, got, want)
		}
	}
	for _, in := range []string{"", "\n\n  \n", "[]", "[\n]\n"} {
		if fs := mustParse(t, []byte(in)); len(fs) != 0 {
			t.Errorf("%q: %d findings, want 0", in, len(fs))
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
		target   error
	}{
		{"syntax", `{"template-id":"a"}` + "\n" + `{"template-id":}`, 2, parse.ErrFormat},
		{"no template-id", `{"template-id":"a"}` + "\n\n" + `{"host":"x"}`, 3, parse.ErrFormat},
		{"scalar line", `{"template-id":"a"}` + "\n" + `42`, 2, parse.ErrFormat},
		{"truncated", `{"template-id":"a"`, 1, parse.ErrFormat},
		{"unclosed array", `[{"template-id":"a"}`, 1, parse.ErrFormat},
		{"nested array", `[[{"template-id":"a"}]]`, 1, parse.ErrFormat},
		{"wrong type", `{"template-id":"a","info":"x"}`, 1, parse.ErrFormat},
		{"sarif", `{"version":"2.1.0","runs":[]}`, 1, parse.ErrFormat},
	} {
		_, _, err := parseAll(t, []byte(tc.in), parse.Options{File: "f.jsonl"})
		var pe *parse.Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %v, want *parse.Error", tc.name, err)
			continue
		}
		if pe.File != "f.jsonl" || pe.Line != tc.line || !errors.Is(err, tc.target) {
			t.Errorf("%s: got %v (line %d), want line %d wrapping %v", tc.name, err, pe.Line, tc.line, tc.target)
		}
	}
}

// Dropped values (request, response, ...) are cut before decoding; errors
// after them still point at the right line and byte.
func TestDroppedValues(t *testing.T) {
	rec := "{\"template-id\":\"a\",\n\"request\":\"GET /{[\\\"x\\\"]} HTTP/1.1\\r\\n\",\n" +
		"\"interaction\":{\"raw-request\":\"}}\",\"n\":[1,{\"a\":2}]},\n\"response\":\"ok\",\"matched-at\":\"https://x.example/\"}"
	fs := mustParse(t, []byte(rec+"\n"+rec))
	if len(fs) != 2 || fs[0].Location.URI != "https://x.example/" {
		t.Fatalf("got %+v", fs)
	}
	bad := rec + "\n" + strings.Replace(rec, `"matched-at":"https`, `"matched-at"::"https`, 1)
	_, _, err := parseAll(t, []byte(bad), parse.Options{File: "f"})
	var pe *parse.Error
	if !errors.As(err, &pe) {
		t.Fatalf("err %v", err)
	}
	wantOff := int64(len(rec)+1) + int64(strings.Index(rec, `"matched-at":"`)+len(`"matched-at":`))
	if pe.Line != 8 || pe.Offset < wantOff-1 || pe.Offset > wantOff+1 {
		t.Errorf("error at line %d byte %d, want line 8 byte ~%d: %v", pe.Line, pe.Offset, wantOff, err)
	}
}

func TestLimits(t *testing.T) {
	rec := `{"template-id":"a","matched-at":"https://x.example/","info":{"name":"A","description":"` + strings.Repeat("d", 100) + `"}}` + "\n"
	for _, tc := range []struct {
		name string
		in   string
		lim  parse.Limits
	}{
		{"bytes", rec + rec, parse.Limits{MaxBytes: int64(len(rec)) + 10}},
		{"string", rec, parse.Limits{MaxString: 50}},
		{"depth", `{"template-id":"a","info":{"classification":{"x":[[[[1]]]]}}}`, parse.Limits{MaxDepth: 4}},
		{"results", rec + rec + rec, parse.Limits{MaxResults: 2}},
	} {
		_, _, err := parseAll(t, []byte(tc.in), parse.Options{File: "f", Limits: tc.lim})
		var pe *parse.Error
		if !errors.As(err, &pe) || !errors.Is(err, parse.ErrLimit) {
			t.Errorf("%s: error %v, want *parse.Error wrapping ErrLimit", tc.name, err)
		}
	}
	// Within the limits the same input parses.
	if _, _, err := parseAll(t, []byte(rec+rec), parse.Options{File: "f", Limits: parse.Limits{MaxBytes: int64(2 * len(rec)), MaxResults: 2, MaxString: 100, MaxDepth: 3}}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
}

func TestSinkErrorStops(t *testing.T) {
	stop := errors.New("stop")
	in := `{"template-id":"a"}` + "\n" + `{"template-id":"b"}`
	n := 0
	_, err := Parse(context.Background(), strings.NewReader(in), parse.Options{File: "f"}, parse.Sink{
		Finding: func(*finding.Finding) error { n++; return stop },
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d findings, want the sink's error after 1", err, n)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Parse(ctx, strings.NewReader(`{"template-id":"a"}`), parse.Options{File: "f"}, parse.Sink{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]bool{
		`{"template-id":"x"}`:                   true,
		"\xef\xbb\xbf \n[\n {\"templateID\":1}": true,
		`{"info":{"template-id":"x"}}`:          false,
		`{"version":"2.1.0","runs":[]}`:         false,
		`{"name":"a.example","domain":"x"}`:     false,
		``:                                      false,
		`[]`:                                    false,
	} {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %v, want %v", in, got, want)
		}
	}
}

// --- fingerprint determinism -------------------------------------------

// Parsing the same file twice gives the same fingerprints.
func TestFingerprintStableAcrossRuns(t *testing.T) {
	ents, err := os.ReadDir(corpusDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data := readCorpus(t, e.Name())
		a, b := mustParse(t, data), mustParse(t, data)
		if !slices.Equal(fingerprints(a), fingerprints(b)) {
			t.Errorf("%s: fingerprints differ between two parses", e.Name())
		}
	}
}

// reorderKeys re-encodes a JSON value with every object's keys in reverse
// order of their appearance.
func reorderKeys(t testing.TB, raw []byte) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var buf bytes.Buffer
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch d := tok.(type) {
		case json.Delim:
			if d == '[' {
				buf.WriteByte('[')
				for i := 0; dec.More(); i++ {
					if i > 0 {
						buf.WriteByte(',')
					}
					if err := walk(); err != nil {
						return err
					}
				}
				dec.Token()
				buf.WriteByte(']')
				return nil
			}
			type kv struct {
				k string
				v []byte
			}
			var kvs []kv
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				saved := buf
				buf = bytes.Buffer{}
				if err := walk(); err != nil {
					return err
				}
				kvs = append(kvs, kv{kt.(string), slices.Clone(buf.Bytes())})
				buf = saved
			}
			dec.Token()
			buf.WriteByte('{')
			for i := len(kvs) - 1; i >= 0; i-- {
				kb, _ := json.Marshal(kvs[i].k)
				buf.Write(kb)
				buf.WriteByte(':')
				buf.Write(kvs[i].v)
				if i > 0 {
					buf.WriteByte(',')
				}
			}
			buf.WriteByte('}')
		default:
			b, _ := json.Marshal(d)
			buf.Write(b)
		}
		return nil
	}
	if err := walk(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// records splits a corpus file into its records.
func records(t testing.TB, data []byte) [][]byte {
	t.Helper()
	rr := newRecordReader(bytes.NewReader(data), "x", parse.DefaultLimits())
	var out [][]byte
	for {
		if _, _, _, err := rr.next(); err != nil {
			break
		}
		out = append(out, slices.Clone(rr.orig))
	}
	return out
}

// Reordering keys and records changes no fingerprint.
func TestFingerprintIgnoresOrder(t *testing.T) {
	for _, name := range []string{"dd-issue-14071.json", "dd-multiple-v3-export.json", "dd-many-findings-legacy.json", "scb-example-com.jsonl"} {
		data := readCorpus(t, name)
		want := fingerprints(mustParse(t, data))
		recs := records(t, data)
		var shuffled bytes.Buffer
		for i := len(recs) - 1; i >= 0; i-- {
			shuffled.Write(reorderKeys(t, recs[i]))
			shuffled.WriteByte('\n')
		}
		got := fingerprints(mustParse(t, shuffled.Bytes()))
		if !slices.Equal(got, want) {
			t.Errorf("%s: fingerprints changed when keys and records were reordered", name)
		}
	}
}

func fp(t *testing.T, rec string) string {
	t.Helper()
	return mustParse(t, []byte(rec))[0].Fingerprint
}

func TestFingerprintEndpoints(t *testing.T) {
	base := `{"template-id":"exposed-git","matcher-name":"m","info":{"name":"Git"},"matched-at":%q,"timestamp":%q,"ip":%q,"curl-command":%q,"extracted-results":%s}`
	mk := func(url, ts, ip, curl, ex string) string { return fmt.Sprintf(base, url, ts, ip, curl, ex) }
	a := fp(t, mk("https://a.example/.git/config", "2024-01-01T00:00:00Z", "1.1.1.1", "curl a", `["x","y"]`))

	// What changes between runs does not change the fingerprint.
	same := []string{
		mk("https://a.example/.git/config", "2025-06-01T10:00:00Z", "2.2.2.2", "curl b", `["y","x"]`),
		mk("HTTPS://A.Example:443/.git/config", "2024-01-01T00:00:00Z", "1.1.1.1", "curl a", `["x","y"]`),
		mk("https://user:pw@a.example/.git/config#frag", "2024-01-01T00:00:00Z", "1.1.1.1", "curl a", `["x","y","x"]`),
	}
	for _, s := range same {
		if got := fp(t, s); got != a {
			t.Errorf("fingerprint changed for %s", s)
		}
	}
	if x, y := fp(t, mk("https://a.example/?b=2&a=1", "", "", "", "[]")), fp(t, mk("https://a.example/?a=1&b=2", "", "", "", "[]")); x != y {
		t.Error("query parameter order changed the fingerprint")
	}

	// Different endpoints and different evidence stay apart
	// (DefectDojo #12397 merged such findings).
	differ := []string{
		mk("https://b.example/.git/config", "", "", "", `["x","y"]`),
		mk("https://a.example/app/.git/config", "", "", "", `["x","y"]`),
		mk("https://a.example:8443/.git/config", "", "", "", `["x","y"]`),
		mk("http://a.example/.git/config", "", "", "", `["x","y"]`),
		mk("https://a.example/.git/config", "", "", "", `["x","z"]`),
		strings.Replace(mk("https://a.example/.git/config", "", "", "", `["x","y"]`), `"m"`, `"m2"`, 1),
	}
	seen := map[string]string{a: "base"}
	for _, s := range differ {
		got := fp(t, s)
		if prev, ok := seen[got]; ok {
			t.Errorf("fingerprint of %s equals that of %s", s, prev)
		}
		seen[got] = s
	}
}

func TestNormalisedTarget(t *testing.T) {
	for in, want := range map[string][2]string{
		"https://Example.com":           {"https://example.com/", "https://example.com"},
		"http://example.com:80/a?z=1&a": {"http://example.com/a?a&z=1", "http://example.com"},
		"https://[::1]:443/x":           {"https://[::1]/x", "https://[::1]"},
		"http://[::1]:8080/x":           {"http://[::1]:8080/x", "http://[::1]:8080"},
		"Example.com:22":                {"example.com:22", "example.com"},
		"www.asdf.de":                   {"www.asdf.de", "www.asdf.de"},
	} {
		tg := parseTarget(in)
		if tg.norm != want[0] || tg.base != want[1] {
			t.Errorf("parseTarget(%q) = norm %q base %q, want %q %q", in, tg.norm, tg.base, want[0], want[1])
		}
	}
}

// --- fuzzing -------------------------------------------------------------

func FuzzParse(f *testing.F) {
	ents, err := os.ReadDir(corpusDir(f))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		b := readCorpus(f, e.Name())
		if len(b) > 16<<10 {
			b = b[:16<<10]
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"template-id":"a","info":{"classification":{"cve-id":"cve-1-2"}}},{"templateID":"b"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := parse.Limits{MaxBytes: 1 << 20, MaxDepth: 32, MaxString: 4096, MaxResults: 1000}
		st, err := Parse(context.Background(), bytes.NewReader(data), parse.Options{File: "fuzz", Limits: lim}, parse.Sink{
			Finding: func(f *finding.Finding) error {
				if f.Fingerprint == "" || f.RuleID == "" || f.Tool != Tool {
					t.Fatalf("incomplete finding %+v", f)
				}
				return nil
			},
		})
		if err != nil {
			var pe *parse.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *parse.Error", err, err)
			}
			if !errors.Is(err, parse.ErrFormat) && !errors.Is(err, parse.ErrLimit) {
				t.Fatalf("error %v wraps neither ErrFormat nor ErrLimit", err)
			}
		}
		if st.Findings > st.Runs {
			t.Fatalf("stats %+v: more findings than records", st)
		}
	})
}
