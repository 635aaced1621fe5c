package nuclei_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/scan/internal/dnstest"
	"github.com/starpipe/starpipe/scan/nuclei"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
)

// The scans of these tests run as the worker runs them: in the real
// starpipe-scanner, a child process whose HOME and TMPDIR are inside the
// test's temporary directory. This test binary does not link nuclei, so
// running it writes nothing under the real $HOME.

// token is the scan credential of the tests; it must never appear in output.
const token = "sp-test-7f3a9c1e-secret-bearer"

// templatesDir is the shipped template set, as an absolute path: the
// scanner runs in a directory of its own.
var templatesDir = func() string {
	d, err := filepath.Abs(filepath.Join("..", "..", "configs", "templates"))
	if err != nil {
		panic(err)
	}
	return d
}()

// requestLog records the paths a test server was asked for.
type requestLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *requestLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, r.URL.Path)
}

func (l *requestLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.paths)
}

// vulnerableServer has one instance of most weaknesses the shipped
// templates look for, and an administrative area behind a bearer token
// whose debug page echoes the token (so redaction of responses is tested).
func vulnerableServer(t *testing.T, log *requestLog) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/.git/config", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n")
	})
	mux.HandleFunc("/admin/debug", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "APP_ENV=production\nDEBUG=true\nAUTH_HEADER=%s\n", r.Header.Get("Authorization"))
	})
	mux.HandleFunc("/starpipe-demo/vuln", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Query().Get("id"), "'") {
			http.Error(w, `STARPIPE-DEMO-SQL-ERROR: syntax error near "'" at line 1`, http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "item 1")
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!DOCTYPE html><html><body><form method="post" action="/login">`+
			`<input name="user"><input type="password" name="pass"><button>Sign in</button></form></body></html>`)
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!DOCTYPE html><html><body>starpipe demo shop</body></html>")
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		w.Header().Set("Server", "starpipe-demo/1.4.2")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// hardenedServer answers every path with the same HTML page, the way a
// single-page application does, over TLS, sends the security headers and
// hides its version. The page mentions the strings the templates look for in prose.
// No template may match it.
func hardenedServer(t *testing.T, log *requestLog) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		h := w.Header()
		h.Set("Server", "nginx")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		fmt.Fprint(w, "<!DOCTYPE html><html><head><title>Help</title></head><body>\n"+
			"<p>Never serve your .git directory: its [core] section and repositoryformatversion = 0 give it away.</p>\n"+
			"<p>Set DEBUG=true only in development; API_KEY=... belongs in a vault.</p>\n"+
			"<p>Index of /files/ is disabled. STARPIPE-DEMO-SQL-ERROR is documented elsewhere.</p>\n"+
			"</body></html>\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// result is the part of a nuclei JSON line the tests look at.
type result struct {
	TemplateID  string `json:"template-id"`
	MatcherName string `json:"matcher-name"`
	Host        string `json:"host"`
	Matched     string `json:"matched-at"`
	Request     string `json:"request"`
	Response    string `json:"response"`
	Curl        string `json:"curl-command"`
	Encoded     string `json:"template-encoded"`
	Info        struct {
		Severity       string `json:"severity"`
		Classification *struct {
			CVEID []string `json:"cve-id"`
			CWEID []string `json:"cwe-id"`
			CVSS  string   `json:"cvss-metrics"`
		} `json:"classification"`
	} `json:"info"`
}

func parseLines(t *testing.T, out []byte) []result {
	t.Helper()
	var rs []result
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line is not JSON: %v\n%s", err, sc.Text())
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// matchesOn returns "template-id[:matcher]" of the results whose match is on
// srv, sorted.
func matchesOn(rs []result, srv *httptest.Server) []string {
	var out []string
	for _, r := range rs {
		if !strings.HasPrefix(r.Matched, srv.URL) {
			continue
		}
		k := r.TemplateID
		if r.MatcherName != "" {
			k += ":" + r.MatcherName
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// scan runs cfg in the scanner and returns its output and its standard
// error (its log lines).
func scan(t *testing.T, cfg nuclei.Config) ([]byte, string) {
	t.Helper()
	if cfg.TemplateDirs == nil {
		cfg.TemplateDirs = []string{templatesDir}
	}
	var out bytes.Buffer
	var stderr syncBuffer
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: t.TempDir(), Stderr: &stderr}
	if err := r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: &cfg, Network: loopback}, &out); err != nil {
		t.Fatalf("nuclei scan: %v", err)
	}
	return out.Bytes(), stderr.String()
}

// syncBuffer is a bytes.Buffer safe for the runner's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logged returns the value of key in the scanner's log line with msg.
func logged(t *testing.T, stderr, msg, key string) string {
	t.Helper()
	for line := range strings.Lines(stderr) {
		if !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		if _, v, ok := strings.Cut(line, " "+key+"="); ok {
			if q, ok := strings.CutPrefix(v, `"`); ok {
				v, _, _ = strings.Cut(q, `"`)
				return v
			}
			v, _, _ = strings.Cut(strings.TrimSpace(v), " ")
			return v
		}
	}
	t.Fatalf("no %q with %s in the scanner's log:\n%s", msg, key, stderr)
	return ""
}

// TestScanHomeLeftEmpty checks that a scan keeps its files (nuclei's
// configuration, written at package initialisation, and the scan's
// temporary files) in the run directory under the scan home, and removes
// them.
func TestScanHomeLeftEmpty(t *testing.T) {
	var vlog requestLog
	vuln := vulnerableServer(t, &vlog)
	home := t.TempDir()
	var stderr syncBuffer
	r := &scanexec.Runner{Path: scanexectest.Binary(t), Home: home, Stderr: &stderr}
	cfg := nuclei.Config{Targets: []string{vuln.URL}, TemplateDirs: []string{templatesDir}}
	if err := r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: &cfg, Network: loopback}, io.Discard); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("scan home holds %v after the scan", entries)
	}
}

// TestTemplatesLoad checks the shipped templates' metadata the pipeline
// relies on, and that nuclei's own parser loads every one of them.
func TestTemplatesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(templatesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in %s: %v", templatesDir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tpl struct {
			ID   string `yaml:"id"`
			Info struct {
				Name, Author, Description string
				Tags                      string
			} `yaml:"info"`
		}
		if err := yaml.Unmarshal(b, &tpl); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".yaml"); tpl.ID != want {
			t.Errorf("%s: id %q differs from the file name", f, tpl.ID)
		}
		if tpl.Info.Author != "starpipe" {
			t.Errorf("%s: author %q, want starpipe", tpl.ID, tpl.Info.Author)
		}
		if tpl.Info.Description == "" || tpl.Info.Name == "" || tpl.Info.Tags == "" {
			t.Errorf("%s: name, description and tags are required", tpl.ID)
		}
		if !strings.HasPrefix(tpl.ID, "starpipe-") {
			t.Errorf("%s: id should start with starpipe-", tpl.ID)
		}
	}
	// A scan of a server that answers nothing loads every template
	// through nuclei's parser; the scanner logs how many loaded.
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, stderr := scan(t, nuclei.Config{Targets: []string{srv.URL}})
	if got := logged(t, stderr, "nuclei scan finished", "templates"); got != fmt.Sprint(len(files)) {
		t.Errorf("nuclei loaded %s templates from %d files", got, len(files))
	}
}

func TestRunFindsWeaknessesWithCredentials(t *testing.T) {
	var vlog, hlog requestLog
	vuln := vulnerableServer(t, &vlog)
	hard := hardenedServer(t, &hlog)

	out, stderr := scan(t, nuclei.Config{
		Targets:             []string{vuln.URL, hard.URL},
		Headers:             []string{"Authorization: Bearer " + token},
		KeepRequestResponse: true,
		Timeout:             time.Minute,
	})
	rs := parseLines(t, out)
	if targets, results := logged(t, stderr, "nuclei scan finished", "targets"), logged(t, stderr, "nuclei scan finished", "results"); targets != "2" || results != fmt.Sprint(len(rs)) {
		t.Fatalf("scanner logged targets=%s results=%s, %d lines", targets, results, len(rs))
	}
	// The scanner's diagnostics, which reach the worker's log, never
	// hold the credential either.
	if strings.Contains(stderr, token) {
		t.Errorf("scanner stderr holds the bearer token:\n%s", stderr)
	}
	want := []string{
		"starpipe-admin-debug-exposure",
		"starpipe-demo-cve-2099-0001",
		"starpipe-git-config-exposure",
		"starpipe-http-cleartext",
		"starpipe-login-form-detect",
		"starpipe-missing-security-headers:content-security-policy",
		"starpipe-missing-security-headers:x-content-type-options",
		"starpipe-missing-security-headers:x-frame-options",
		"starpipe-server-version-disclosure",
	}
	if got := matchesOn(rs, vuln); !slices.Equal(got, want) {
		t.Errorf("matches on the vulnerable server:\n got %q\nwant %q", got, want)
	}
	if got := matchesOn(rs, hard); len(got) != 0 {
		t.Errorf("false positives on the hardened server: %q", got)
	}
	if hlog.count() == 0 {
		t.Error("the hardened server was never asked: its lack of findings proves nothing")
	}

	// The credential reached the server (the debug page matched) but
	// appears nowhere in the output, not even where the server echoed it.
	if bytes.Contains(out, []byte(token)) {
		t.Fatalf("output contains the bearer token:\n%s", out)
	}
	var sawRedacted bool
	for _, r := range rs {
		if r.Encoded != "" {
			t.Errorf("%s: template-encoded kept", r.TemplateID)
		}
		if r.TemplateID == "starpipe-admin-debug-exposure" {
			if !strings.Contains(r.Request, "Authorization: "+nuclei.Redacted) {
				t.Errorf("debug request does not show the redacted header:\n%s", r.Request)
			}
			if !strings.Contains(r.Response, "AUTH_HEADER="+nuclei.Redacted) {
				t.Errorf("debug response does not show the redacted echo:\n%s", r.Response)
			}
			sawRedacted = true
		}
		if r.TemplateID == "starpipe-demo-cve-2099-0001" {
			c := r.Info.Classification
			if c == nil || len(c.CVEID) != 1 || !strings.EqualFold(c.CVEID[0], "CVE-2099-0001") ||
				len(c.CWEID) != 1 || !strings.EqualFold(c.CWEID[0], "CWE-89") ||
				c.CVSS != "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" || r.Info.Severity != "critical" {
				t.Errorf("demo CVE classification: %+v severity %q", c, r.Info.Severity)
			}
		}
	}
	if !sawRedacted {
		t.Error("no debug result to check redaction on")
	}
}

func TestRunAuthenticatedTemplateNeedsTheRightCredential(t *testing.T) {
	for name, headers := range map[string][]string{
		"none":  nil,
		"wrong": {"Authorization: Bearer not-the-token"},
	} {
		t.Run(name, func(t *testing.T) {
			var vlog requestLog
			vuln := vulnerableServer(t, &vlog)
			out, _ := scan(t, nuclei.Config{Targets: []string{vuln.URL}, Headers: headers, Timeout: time.Minute})
			got := matchesOn(parseLines(t, out), vuln)
			if slices.Contains(got, "starpipe-admin-debug-exposure") {
				t.Errorf("debug template matched without the right credential")
			}
			// The rest of the scan is unaffected.
			if !slices.Contains(got, "starpipe-git-config-exposure") {
				t.Errorf("unauthenticated findings missing: %q", got)
			}
			if bytes.Contains(out, []byte("not-the-token")) {
				t.Errorf("output contains the configured header value")
			}
			if bytes.Contains(out, []byte(`"request"`)) || bytes.Contains(out, []byte(`"curl-command"`)) {
				t.Errorf("request kept although KeepRequestResponse is off")
			}
		})
	}
}

// dnsRecorder is an authoritative server for starpipe.test that records
// every question it is asked.
type dnsRecorder struct {
	mu    sync.Mutex
	names []string
}

func (d *dnsRecorder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, q := range req.Question {
		d.mu.Lock()
		d.names = append(d.names, strings.ToLower(q.Name))
		d.mu.Unlock()
		if strings.EqualFold(q.Name, "app.starpipe.test.") && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR("app.starpipe.test. 60 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
	}
	_ = w.WriteMsg(m)
}

func (d *dnsRecorder) questions() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.names...)
}

func startDNS(t *testing.T, ip string, h dns.Handler) string { return dnstest.Serve(t, ip, h) }

// TestRunReachesOnlyItsTargets checks, for a hostname target, the three
// ways out that the scan has: name resolution goes only to the configured
// resolver and only for the target's name; the HTTP requests arrive at the
// target; and nuclei's update client (which phones home from the first
// engine of a process even with updates disabled) is refused without a
// connection. It cannot see a connection to a third address made by code
// that neither resolves a name through nuclei nor uses the update client;
// BENCHMARKS.scan.md records a system-call trace that covers that case.
func TestRunReachesOnlyItsTargets(t *testing.T) {
	rec := &dnsRecorder{}
	resolver := startDNS(t, "127.0.0.2", rec)
	var vlog requestLog
	vuln := vulnerableServer(t, &vlog)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(vuln.URL, "http://"))
	target := "http://app.starpipe.test:" + port

	out, stderr := scan(t, nuclei.Config{Targets: []string{target}, Resolvers: []string{resolver}, Timeout: time.Minute})
	got := matchesOn(parseLines(t, out), &httptest.Server{URL: target})
	if !slices.Contains(got, "starpipe-git-config-exposure") {
		t.Fatalf("hostname target not scanned through the configured resolver: %q", got)
	}
	qs := rec.questions()
	if len(qs) == 0 {
		t.Fatal("the configured resolver was never asked")
	}
	for _, q := range qs {
		if q != "app.starpipe.test." {
			t.Errorf("resolver asked for %q, which is not the target", q)
		}
	}
	if vlog.count() == 0 {
		t.Error("target saw no request")
	}
	// The scanner logs the hosts its update client was refused.
	refused := strings.Fields(strings.Trim(logged(t, stderr, "outbound requests refused", "hosts"), "[]"))
	for _, host := range refused {
		if host != "api.pdtm.sh" {
			t.Errorf("update client tried %q", host)
		}
	}
	t.Logf("update client: %d requests refused; resolver: %d questions; target: %d requests",
		len(refused), len(qs), vlog.count())
}

func TestRedactor(t *testing.T) {
	r, err := nuclei.NewRedactor([]string{
		"Authorization: Basic dXNlcjpodW50ZXIyMjI=", // user:hunter222
		"Cookie: session=abcdef123; theme=1",
		"X-Api-Key: zq9",
	})
	if err != nil {
		t.Fatal(err)
	}
	in := "Authorization: Basic dXNlcjpodW50ZXIyMjI=\nCookie: session=abcdef123; theme=1\n" +
		"pw hunter222 cookie abcdef123 key zq9"
	got := r.Redact(in)
	for _, s := range []string{"dXNlcjpodW50ZXIyMjI=", "hunter222", "abcdef123"} {
		if strings.Contains(got, s) {
			t.Errorf("%q left in %q", s, got)
		}
	}
	// A whole header value is redacted however short it is; short parts
	// of a value (theme=1's 1) are not, or every digit 1 would go.
	if !strings.Contains(got, "key "+nuclei.Redacted) || !strings.Contains(got, "pw "+nuclei.Redacted) {
		t.Errorf("values not redacted in %q", got)
	}
	if _, err := nuclei.NewRedactor([]string{"no colon here"}); err == nil {
		t.Error("a header without a colon was accepted")
	}
}

// BenchmarkRun measures one whole scan as the worker runs it: starting
// the scanner process (nuclei's package initialisation included), engine
// creation, loading the shipped templates, scanning one loopback target
// and closing.
func BenchmarkRun(b *testing.B) {
	var vlog requestLog
	vuln := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vlog.add(r)
		if r.URL.Path == "/.git/config" {
			fmt.Fprint(w, "[core]\n\trepositoryformatversion = 0\n")
			return
		}
		http.NotFound(w, r)
	}))
	defer vuln.Close()
	r := &scanexec.Runner{Path: scanexectest.Binary(b), Home: b.TempDir()}
	cfg := nuclei.Config{Targets: []string{vuln.URL}, TemplateDirs: []string{templatesDir}}
	for b.Loop() {
		if err := r.Run(context.Background(), scanexec.Job{Kind: scanexec.KindNuclei, Nuclei: &cfg, Network: loopback}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// loopback is the network policy of the tests' scans: their targets and
// resolvers are on loopback, which the default policy refuses.
var loopback = &scanexec.Network{Allow: []string{"127.0.0.0/8", "::1/128"}}
