package nuclei

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	nucleilib "github.com/projectdiscovery/nuclei/v3/lib"
	"github.com/projectdiscovery/nuclei/v3/pkg/catalog/config"

	"github.com/starpipe/starpipe/scan/internal/dnstest"
	"github.com/starpipe/starpipe/scan/nucleienv"
)

// token is the scan credential of the tests; it must never appear in output.
const token = "sp-test-7f3a9c1e-secret-bearer"

// templatesDir is the shipped template set.
var templatesDir = filepath.Join("..", "..", "configs", "templates")

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

func scan(t *testing.T, cfg Config) (Stats, []byte) {
	t.Helper()
	if cfg.TemplateDirs == nil {
		cfg.TemplateDirs = []string{templatesDir}
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	var buf bytes.Buffer
	st, err := Run(context.Background(), cfg, &buf)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return st, buf.Bytes()
}

func TestInitOrder(t *testing.T) {
	// scan/nucleienv must have redirected the environment before nuclei's
	// config package fixed its paths at init.
	dir := nucleienv.Dir()
	if err := nucleienv.Err(); err != nil {
		t.Fatalf("nucleienv: %v", err)
	}
	if got := config.DefaultConfig.GetConfigDir(); !strings.HasPrefix(got, dir+"/") {
		t.Fatalf("nuclei config dir %q is outside the state dir %q", got, dir)
	}
	if got := config.DefaultConfig.TemplatesDirectory; !strings.HasPrefix(got, dir+"/") {
		t.Fatalf("nuclei templates dir %q is outside the state dir %q", got, dir)
	}
	if got := os.Getenv("HOME"); got != dir+"/home" {
		t.Fatalf("HOME = %q, want %q", got, dir+"/home")
	}
	if got := os.TempDir(); got != dir+"/tmp" {
		t.Fatalf("TempDir = %q, want %q", got, dir+"/tmp")
	}
}

// TestTemplatesLoad loads every shipped template through nuclei's own
// parser and checks the metadata the pipeline relies on.
func TestTemplatesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(templatesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in %s: %v", templatesDir, err)
	}
	if err := prepareConfigDir(); err != nil {
		t.Fatal(err)
	}
	if err := isolate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts, err := engineOptions(ctx, Config{TemplateDirs: []string{templatesDir}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := nucleilib.NewNucleiEngineCtx(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	if err := engine.LoadAllTemplates(); err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, tpl := range engine.GetTemplates() {
		loaded[tpl.ID] = true
		info := tpl.Info
		if info.Authors.String() != "starpipe" {
			t.Errorf("%s: author %q, want starpipe", tpl.ID, info.Authors.String())
		}
		if info.Description == "" || info.Name == "" || info.Tags.IsEmpty() {
			t.Errorf("%s: name, description and tags are required", tpl.ID)
		}
		if !strings.HasPrefix(tpl.ID, "starpipe-") {
			t.Errorf("%s: id should start with starpipe-", tpl.ID)
		}
	}
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if !loaded[id] {
			t.Errorf("template %s did not load (or its id differs from its file name)", f)
		}
	}
	if len(loaded) != len(files) {
		t.Errorf("loaded %d templates from %d files", len(loaded), len(files))
	}
}

func TestRunFindsWeaknessesWithCredentials(t *testing.T) {
	var vlog, hlog requestLog
	vuln := vulnerableServer(t, &vlog)
	hard := hardenedServer(t, &hlog)

	st, out := scan(t, Config{
		Targets:             []string{vuln.URL, hard.URL},
		Headers:             []string{"Authorization: Bearer " + token},
		KeepRequestResponse: true,
		Timeout:             time.Minute,
	})
	rs := parseLines(t, out)
	if st.Targets != 2 || st.Results != len(rs) {
		t.Fatalf("stats %+v, %d lines", st, len(rs))
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
			if !strings.Contains(r.Request, "Authorization: "+Redacted) {
				t.Errorf("debug request does not show the redacted header:\n%s", r.Request)
			}
			if !strings.Contains(r.Response, "AUTH_HEADER="+Redacted) {
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
			_, out := scan(t, Config{Targets: []string{vuln.URL}, Headers: headers, Timeout: time.Minute})
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

	_, out := scan(t, Config{Targets: []string{target}, Resolvers: []string{resolver}, Timeout: time.Minute})
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
	for _, host := range phoneHome.attempts() {
		if host != "api.pdtm.sh" {
			t.Errorf("update client tried %q", host)
		}
	}
	t.Logf("update client: %d requests refused; resolver: %d questions; target: %d requests",
		len(phoneHome.attempts()), len(qs), vlog.count())
}

func TestRedactor(t *testing.T) {
	r, err := newRedactor([]string{
		"Authorization: Basic dXNlcjpodW50ZXIyMjI=", // user:hunter222
		"Cookie: session=abcdef123; theme=1",
		"X-Api-Key: zq9",
	})
	if err != nil {
		t.Fatal(err)
	}
	in := "Authorization: Basic dXNlcjpodW50ZXIyMjI=\nCookie: session=abcdef123; theme=1\n" +
		"pw hunter222 cookie abcdef123 key zq9"
	got := r.redact(in)
	for _, s := range []string{"dXNlcjpodW50ZXIyMjI=", "hunter222", "abcdef123"} {
		if strings.Contains(got, s) {
			t.Errorf("%q left in %q", s, got)
		}
	}
	// A whole header value is redacted however short it is; short parts
	// of a value (theme=1's 1) are not, or every digit 1 would go.
	if !strings.Contains(got, "key "+Redacted) || !strings.Contains(got, "pw "+Redacted) {
		t.Errorf("values not redacted in %q", got)
	}
	if _, err := newRedactor([]string{"no colon here"}); err == nil {
		t.Error("a header without a colon was accepted")
	}
}

// BenchmarkRun measures one whole scan (engine creation, loading the
// shipped templates, scanning one loopback target, closing) against the
// vulnerable test server.
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
	state := b.TempDir()
	cfg := Config{Targets: []string{vuln.URL}, TemplateDirs: []string{templatesDir}, StateDir: state}
	for b.Loop() {
		var buf bytes.Buffer
		if _, err := Run(context.Background(), cfg, &buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngine measures engine creation, template loading and Close
// without a scan.
func BenchmarkEngine(b *testing.B) {
	if err := isolate(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	state := b.TempDir()
	for b.Loop() {
		opts, err := engineOptions(ctx, Config{TemplateDirs: []string{templatesDir}, StateDir: state})
		if err != nil {
			b.Fatal(err)
		}
		e, err := nucleilib.NewNucleiEngineCtx(ctx, opts...)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.LoadAllTemplates(); err != nil {
			b.Fatal(err)
		}
		e.Close()
	}
}
