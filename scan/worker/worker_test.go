package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/miekg/dns"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/demo"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/daemon"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/internal/testlog"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/internal/dnstest"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/scanexec/scanexectest"
	"github.com/starpipe/starpipe/scan/worker"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/schedulertest"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// The tests here run scheduled scans end to end, wired as
// cmd/starpipe/serve.go wires the daemon: the real Scheduler (on a fake
// clock) claims a due time and writes the scan request to the outbox; the
// relay publishes it to the embedded Kafka-protocol broker; the worker
// consumes it, scans loopback targets with the real nuclei, amass and code
// runners, and submits the output through intake; the relay publishes the
// run; the ingest consumer parses, scores, maps and stores the findings in
// PostgreSQL. Every target is on loopback: an httptest server running the
// demo shop, a miekg/dns server, a git repository in a temporary directory.

// cadence is every schedule's: the fake clock is moved to its next due time
// to fire them.
const cadence = "daily@02:00"

// Bearer tokens of the demo target: the right one opens /admin/debug.
const (
	rightToken = "tok-right-7Hq2xW9pLm4"
	wrongToken = "tok-wrong-3Fz8kR1vNc6"
)

// harness is a daemon as `starpipe serve` builds it (internal/daemon),
// with the relay, ingest and worker roles, on a database and the embedded
// broker; startScheduler adds a second daemon with the scheduler role on a
// fake clock.
type harness struct {
	t      *testing.T
	ctx    context.Context
	st     *store.Store
	dbURL  string
	broker *bus.Embedded
	kr     *vault.Keyring
	wk     bus.Handler // the daemon's worker handler
	clk    *fakeClock
	log    *slog.Logger
	// schedOpts are the admin bounds the harness's schedules are saved with.
	schedOpts spec.Options
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, ctx: t.Context(), log: testLogger(t)}
	h.st, h.dbURL = storetest.New(t)

	broker, err := bus.StartEmbedded(h.ctx, bus.EmbeddedConfig{Partitions: 2, GroupMinSessionTimeout: 500 * time.Millisecond}, h.log)
	if err != nil {
		t.Fatalf("starting embedded broker: %v", err)
	}
	t.Cleanup(broker.Close)
	h.broker = broker

	key, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if h.kr, err = vault.NewKeyring(key); err != nil {
		t.Fatal(err)
	}
	h.schedOpts = spec.Options{Analyzers: slices.Collect(maps.Keys(testAnalyzers)), Network: loopbackPolicy,
		Credentials: credentials.ScopeLookup{St: h.st}}
	h.startDaemon([]string{config.RoleRelay, config.RoleIngest, config.RoleWorker},
		daemon.WithKeyring(h.kr),
		daemon.WithWorkerHandler(func(next bus.Handler) bus.Handler {
			h.wk = next
			return next
		}))
	return h
}

// startDaemon builds and runs a daemon with roles on the harness's
// database and broker until the test ends. Its cleanup is registered
// after the store's and the broker's, so it runs before they close.
func (h *harness) startDaemon(roles []string, opts ...daemon.Option) {
	h.t.Helper()
	cfg := config.Default()
	cfg.Roles = roles
	cfg.StateDir = h.t.TempDir()
	cfg.Database.URL = h.dbURL
	cfg.Kafka.Brokers = h.broker.Addrs()
	cfg.Kafka.Partitions = 2
	cfg.ShutdownTimeout, cfg.ShutdownDelay = 20*time.Second, 0
	// The admin side of scanning, as a configuration file would give it.
	cfg.Analyzers = testAnalyzers
	cfg.Scan.AllowNetworks = []string{"127.0.0.0/8", "::1"}
	cfg.Scan.ScannerPath = scanexectest.Binary(h.t)
	cfg.Scan.CodeWorkDir = codeWorkDir(h.t)
	opts = append([]daemon.Option{
		daemon.WithLogger(h.log),
		daemon.WithBusConfig(func(c *bus.Config) {
			c.SessionTimeout = 2 * time.Second
			c.HeartbeatInterval = 200 * time.Millisecond
		}),
		daemon.WithRunOptions(func(_ string, ro *bus.RunOptions) {
			ro.InitialBackoff, ro.MaxBackoff = 50*time.Millisecond, time.Second
		}),
		daemon.WithRelayOptions(relay.WithPollInterval(100 * time.Millisecond)),
	}, opts...)
	d, err := daemon.New(h.ctx, cfg, opts...)
	if err != nil {
		h.t.Fatalf("building the daemon: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(h.ctx))
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("daemon %v: %v", roles, err)
		}
	})
}

// saveCredential stores a bearer credential in the vault.
func (h *harness) saveCredential(name, token string, targets ...string) {
	h.t.Helper()
	c := vault.Credential{Name: name, Kind: vault.KindBearer, Secret: vault.Secret(token), Targets: targets, AllowHTTP: true}
	if _, _, err := credentials.Save(h.ctx, h.st, h.kr, c, "test"); err != nil {
		h.t.Fatalf("saving credential %s: %v", name, err)
	}
}

// schedule builds a schedule with the tests' cadence.
func schedule(name string, kind finding.ScanKind) spec.Schedule {
	return spec.Schedule{Name: name, Kind: kind, Cadence: cadence}
}

// startScheduler applies the schedules, starts the scheduler on a fake
// clock that stands at the present, and returns the schedules' first due
// time, once the scheduler is waiting for it.
func (h *harness) startScheduler(ss ...spec.Schedule) time.Time {
	h.t.Helper()
	if _, err := scheduler.Apply(h.ctx, h.st, ss, "test", h.schedOpts); err != nil {
		h.t.Fatalf("applying schedules: %v", err)
	}
	// The present, not a fixed date: the schedules owe runs from their
	// creation (now), so the first due time after it is owed and nothing
	// before it is missed.
	h.clk = newFakeClock(time.Now())
	c, err := ss[0].CadenceOf()
	if err != nil {
		h.t.Fatal(err)
	}
	due := c.Next(h.clk.Now())
	// A process of its own with the scheduler role, as a split
	// deployment runs it.
	h.startDaemon([]string{config.RoleScheduler}, daemon.WithSchedulerOptions(func(o *scheduler.Options) {
		o.Clock = h.clk
		// Reloads come from NOTIFY; a long poll keeps the wall clock from
		// adding wake-ups.
		o.PollInterval = time.Hour
	}))
	h.clk.AwaitTimers(h.t, due, 1)
	return due
}

// fire moves the clock to due and waits until the scheduler has claimed
// it and is waiting for the next due time.
func (h *harness) fire(due time.Time) time.Time {
	h.t.Helper()
	h.clk.Set(due)
	next := due.AddDate(0, 0, 1)
	h.clk.AwaitTimers(h.t, next, 1)
	return next
}

// waitLedger waits until the schedule's ledger has n rows and every one
// has ended, and returns the rows.
func (h *harness) waitLedger(name string, n int) []store.LedgerEntry {
	h.t.Helper()
	var es []store.LedgerEntry
	h.waitFor(fmt.Sprintf("%d finished ledger rows of %s", n, name), 90*time.Second, func() bool {
		var err error
		if es, err = h.st.ListLedger(h.ctx, name, time.Time{}, time.Time{}); err != nil {
			h.t.Fatal(err)
		}
		if len(es) != n {
			return false
		}
		for _, e := range es {
			if e.Status != finding.LedgerSucceeded && e.Status != finding.LedgerFailed {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("ledger %+v", es) })
	return es
}

// run is a scan run as the tests look at it.
type run struct {
	ID, Scope, Kind, Format, Status, Error, Artifact string
	Assets                                           int
}

// waitRuns waits until every scan run of the schedule has ended and
// returns them by scope.
func (h *harness) waitRuns(schedule string) map[string]run {
	h.t.Helper()
	var out map[string]run
	h.waitFor("the runs of "+schedule+" to end", 30*time.Second, func() bool {
		out = map[string]run{}
		rows, err := storetest.SQL(h.t, h.st).Query(h.ctx, `
			SELECT id::text, scope, kind, format, status, coalesce(error, ''), coalesce(artifact_sha256, ''),
			       coalesce((stats->>'assets')::int, 0)
			FROM scan_runs WHERE schedule_id = $1`, schedule)
		if err != nil {
			h.t.Fatal(err)
		}
		defer rows.Close()
		done := true
		for rows.Next() {
			var r run
			if err := rows.Scan(&r.ID, &r.Scope, &r.Kind, &r.Format, &r.Status, &r.Error, &r.Artifact, &r.Assets); err != nil {
				h.t.Fatal(err)
			}
			if _, dup := out[r.Scope]; dup {
				h.t.Fatalf("two runs of %s for scope %s", schedule, r.Scope)
			}
			out[r.Scope] = r
			done = done && (r.Status == "succeeded" || r.Status == "failed")
		}
		if err := rows.Err(); err != nil {
			h.t.Fatal(err)
		}
		return done
	}, func() string { return fmt.Sprintf("runs %+v", out) })
	return out
}

// storedFinding is a finding row as the tests look at it.
type storedFinding struct {
	Rule, Kind, Severity, SeveritySource, Status string
	CVE, Controls                                []string
}

// findings returns the findings of scope by rule id.
func (h *harness) findings(scope string) map[string]storedFinding {
	h.t.Helper()
	rows, err := storetest.SQL(h.t, h.st).Query(h.ctx, `
		SELECT f.rule_id, f.kind, f.severity, coalesce(f.severity_source, ''), f.status, coalesce(f.cve, '{}'),
		       coalesce((SELECT array_agg(DISTINCT l.control_id ORDER BY l.control_id) FROM control_links l WHERE l.finding_id = f.id), '{}')
		FROM findings f WHERE f.scope = $1`, scope)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]storedFinding{}
	for rows.Next() {
		var f storedFinding
		if err := rows.Scan(&f.Rule, &f.Kind, &f.Severity, &f.SeveritySource, &f.Status, &f.CVE, &f.Controls); err != nil {
			h.t.Fatal(err)
		}
		out[f.Rule] = f
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds; at the deadline it fails with what
// state() describes.
func (h *harness) waitFor(what string, timeout time.Duration, cond func() bool, state func() string) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s; %s", timeout, what, state())
		}
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("waiting for %s: %v", what, h.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoTarget serves the demo shop on loopback.
func demoTarget(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(demo.Handler(rightToken))
	t.Cleanup(srv.Close)
	return srv
}

func ruleIDs(byRule map[string]storedFinding) []string {
	var ids []string
	for id := range byRule {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestExternalScan fires an external schedule at the demo shop and checks
// the findings that reach PostgreSQL; then, with the shop down, it fires
// the next due time, which must fail without closing those findings.
func TestExternalScan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := demoTarget(t)
	sp := schedule("web", finding.KindExternal)
	sp.Targets.URLs = []string{srv.URL + "/"} // the trailing slash is dropped from the scope
	due := h.startScheduler(sp)
	next := h.fire(due)

	es := h.waitLedger("web", 1)
	runs := h.waitRuns("web")
	r, ok := runs[srv.URL]
	if len(runs) != 1 || !ok {
		t.Fatalf("runs by scope: %+v, want one for %s", runs, srv.URL)
	}
	if e := es[0]; e.Status != finding.LedgerSucceeded || !e.Due.Equal(due) || e.CatchUp || e.RunID != r.ID || e.Error != "" {
		t.Fatalf("ledger row %+v, want succeeded at %s with run %s", e, due, r.ID)
	}
	if r.Status != "succeeded" || r.Kind != "external" || r.Format != "nuclei" {
		t.Fatalf("run %+v", r)
	}

	byRule := h.findings(srv.URL)
	t.Logf("findings of %s: %v", srv.URL, ruleIDs(byRule))
	gitConfig, ok := byRule["starpipe-git-config-exposure"]
	if !ok || gitConfig.Kind != "external" || gitConfig.Status != "open" || gitConfig.Severity != "medium" {
		t.Errorf("git config exposure: %+v (present %v)", gitConfig, ok)
	}
	cve, ok := byRule["starpipe-demo-cve-2099-0001"]
	switch {
	case !ok:
		t.Errorf("no finding of starpipe-demo-cve-2099-0001 among %v", ruleIDs(byRule))
	case cve.Severity != "critical" || cve.SeveritySource != "vector" || !slices.Equal(cve.CVE, []string{"CVE-2099-0001"}) || cve.Kind != "external":
		t.Errorf("demo CVE finding %+v, want critical from the vector, CVE-2099-0001", cve)
	case !slices.Contains(cve.Controls, "TVM-07"):
		t.Errorf("demo CVE finding's controls %v lack TVM-07", cve.Controls)
	}
	for _, id := range []string{"starpipe-env-file-exposure", "starpipe-directory-listing", "starpipe-server-version-disclosure"} {
		if _, ok := byRule[id]; !ok {
			t.Errorf("no finding of %s among %v", id, ruleIDs(byRule))
		}
	}
	if f, ok := byRule["starpipe-admin-debug-exposure"]; ok {
		t.Errorf("an external scan, without credentials, found the authenticated area: %+v", f)
	}
	if t.Failed() {
		return
	}

	// The next due time comes while the target is down: the run fails, no
	// scan run is stored, and nothing the first run found is resolved.
	srv.Close()
	h.fire(next)
	es = h.waitLedger("web", 2)
	if e := es[1]; e.Status != finding.LedgerFailed || !e.Due.Equal(next) || e.RunID != "" ||
		!strings.Contains(e.Error, srv.URL) || !strings.Contains(e.Error, "unreachable") {
		t.Fatalf("ledger row of the scan of the stopped target: %+v", e)
	}
	if runs := h.waitRuns("web"); len(runs) != 1 {
		t.Fatalf("runs after the failed scan: %+v", runs)
	}
	for id, f := range h.findings(srv.URL) {
		if f.Status != "open" {
			t.Errorf("%s is %s after a scan that could not reach the target", id, f.Status)
		}
	}
}

// TestAuthenticatedScan fires two authenticated schedules at the demo
// shop, one holding the right bearer token and one a wrong token: only the
// right one reaches the debug dump behind authentication, and neither
// token is stored anywhere.
func TestAuthenticatedScan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	srv := demoTarget(t)
	h.saveCredential("shop-admin", rightToken, srv.URL+"/")
	h.saveCredential("shop-stale", wrongToken, srv.URL+"/app")
	right := schedule("auth-right", finding.KindAuthenticated)
	right.Targets.URLs = []string{srv.URL}
	right.Credential = "shop-admin"
	wrong := schedule("auth-wrong", finding.KindAuthenticated)
	wrong.Targets.URLs = []string{srv.URL + "/app"}
	wrong.Credential = "shop-stale"
	h.fire(h.startScheduler(right, wrong))

	for _, c := range []struct {
		schedule, scope string
		wantDebug       bool
	}{
		{"auth-right", srv.URL, true},
		{"auth-wrong", srv.URL + "/app", false},
	} {
		es := h.waitLedger(c.schedule, 1)
		runs := h.waitRuns(c.schedule)
		r, ok := runs[c.scope]
		if len(runs) != 1 || !ok || r.Status != "succeeded" || r.Kind != "authenticated" {
			t.Fatalf("%s: runs by scope %+v, want one succeeded for %s", c.schedule, runs, c.scope)
		}
		if es[0].Status != finding.LedgerSucceeded || es[0].RunID != r.ID {
			t.Fatalf("%s: ledger row %+v", c.schedule, es[0])
		}
		byRule := h.findings(c.scope)
		t.Logf("findings of %s: %v", c.scope, ruleIDs(byRule))
		debug, got := byRule["starpipe-admin-debug-exposure"]
		if got != c.wantDebug {
			t.Errorf("%s: debug dump found = %v, want %v (findings %v)", c.schedule, got, c.wantDebug, ruleIDs(byRule))
		}
		if got && (debug.Kind != "authenticated" || debug.Severity != "high") {
			t.Errorf("%s: debug dump finding %+v", c.schedule, debug)
		}
		// The rest of the shop is scanned either way: the wrong token
		// did not stop the scan, it only kept the admin area shut.
		if _, ok := byRule["starpipe-git-config-exposure"]; !ok {
			t.Errorf("%s: no git config exposure among %v", c.schedule, ruleIDs(byRule))
		}
		a, content, err := storetest.ReadArtifact(t, h.st, r.Artifact)
		if err != nil {
			t.Fatal(err)
		}
		if a.Format != "nuclei" || len(content) == 0 {
			t.Errorf("%s: artifact %+v, %d bytes", c.schedule, a, len(content))
		}
		assertNoSecret(t, c.schedule+" artifact", string(content))
	}
	// Every artifact, and every row that findings, runs, the ledger, the
	// activity log and the outbox hold.
	rows, err := storetest.SQL(h.t, h.st).Query(h.ctx, `SELECT sha256 FROM artifacts`)
	if err != nil {
		t.Fatal(err)
	}
	var shas []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		shas = append(shas, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(shas) != 2 {
		t.Errorf("%d artifacts, want 2", len(shas))
	}
	for _, sha := range shas {
		_, content, err := storetest.ReadArtifact(t, h.st, sha)
		if err != nil {
			t.Fatal(err)
		}
		assertNoSecret(t, "artifact "+sha, string(content))
	}
	for _, table := range []string{"findings", "scan_runs", "schedule_ledger", "activity_log"} {
		assertNoSecret(t, table, storetest.DumpTable(t, h.st, table))
	}
	var outbox string
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT coalesce(string_agg(convert_from(payload, 'UTF8'), E'\n'), '') FROM outbox`).Scan(&outbox); err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "outbox", outbox)
}

// assertNoSecret fails if text holds either token, plain or encoded.
func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, tok := range []string{rightToken, wrongToken} {
		for _, form := range []string{tok, base64.StdEncoding.EncodeToString([]byte(tok)), base64.StdEncoding.EncodeToString([]byte("Bearer " + tok))} {
			if strings.Contains(text, form) {
				t.Errorf("%s holds a token (%q)", where, form)
			}
		}
	}
}

// zone is the test domain's authoritative data: name -> A record, all on
// loopback.
var zone = map[string]string{
	"example.test.":     "127.0.0.21",
	"www.example.test.": "127.0.0.22",
	"api.example.test.": "127.0.0.23",
}

func startDNS(t *testing.T, ip string, h dns.Handler) string { return dnstest.Serve(t, ip, h) }

// listening reports whether something accepts connections at addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestDomainDiscovery fires an external schedule of a domain: amass
// enumerates it against the local DNS server, its assets are stored as a
// run of their own, and the worker goes on to the discovered hosts, looked
// up through the same server. A host and scheme where nothing listens gets
// no (necessarily empty) scan that would close its findings; the shop on
// www.example.test port 80, where it can be served, is scanned. The
// schedule also names two URLs, each scanned as a run of its own: the
// ledger row of the due time lists every run, amass first, with its scope
// and status.
func TestDomainDiscovery(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	resolver := startDNS(t, "127.0.0.2", &dnstest.Zone{Apex: "example.test.", A: zone})
	// Where binding port 80 is allowed (as root, say), the shop serves
	// www.example.test, so that a discovered host is scanned for real;
	// elsewhere nothing listens on any discovered host.
	served := false
	if ln, err := net.Listen("tcp", net.JoinHostPort(zone["www.example.test."], "80")); err == nil {
		srv := httptest.NewUnstartedServer(demo.Handler(rightToken))
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		served = true
	} else {
		t.Logf("no discovered host will be scanned: %v", err)
	}
	shop1, shop2 := demoTarget(t), demoTarget(t)
	sp := schedule("discovery", finding.KindExternal)
	sp.Targets.Domains = []string{"Example.Test"}
	sp.Targets.URLs = []string{shop1.URL, shop2.URL}
	sp.Amass = spec.AmassSettings{Resolvers: []string{resolver}, Wordlist: []string{"www", "api", "nothere"}}
	h.fire(h.startScheduler(sp))

	es := h.waitLedger("discovery", 1)
	runs := h.waitRuns("discovery")
	scope := "domains:example.test"
	ar, ok := runs[scope]
	if !ok || ar.Format != "amass" || ar.Status != "succeeded" || ar.Kind != "external" {
		t.Fatalf("runs by scope %+v, want a succeeded amass run for %s", runs, scope)
	}
	// One name and one address asset per name of the zone.
	if ar.Assets != 2*len(zone) {
		t.Errorf("amass run stored %d assets, want %d", ar.Assets, 2*len(zone))
	}
	_, content, err := storetest.ReadArtifact(t, h.st, ar.Artifact)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for line := range strings.Lines(string(content)) {
		var rec struct {
			Name      string
			Addresses []struct{ IP string }
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("amass artifact line %q: %v", line, err)
		}
		for _, a := range rec.Addresses {
			got[rec.Name+"."] = append(got[rec.Name+"."], a.IP)
		}
	}
	for name, ip := range zone {
		if !slices.Equal(got[name], []string{ip}) {
			t.Errorf("amass artifact: %s has addresses %v, want %s (all: %v)", name, got[name], ip, got)
		}
	}
	if len(got) != len(zone) {
		t.Errorf("amass artifact names %v, want those of %v", got, zone)
	}
	if e := es[0]; e.Status != finding.LedgerSucceeded || e.RunID != ar.ID {
		t.Fatalf("ledger row %+v, want succeeded with the amass run %s", e, ar.ID)
	}
	// Every run of the due time is in its ledger row, with the scope and
	// status the pipeline gave it: amass, then the configured URLs in
	// order, then any discovered host.
	if es, err = h.st.ListLedger(h.ctx, "discovery", time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	lr := es[0].Runs
	if len(lr) != len(runs) || len(lr) < 3 {
		t.Fatalf("ledger runs %+v, want the %d runs %+v", lr, len(runs), runs)
	}
	for i, wantScope := range []string{scope, shop1.URL, shop2.URL} {
		if lr[i].Scope != wantScope {
			t.Errorf("ledger run %d has scope %s, want %s (runs %+v)", i, lr[i].Scope, wantScope, lr)
		}
	}
	for _, l := range lr {
		r := runs[l.Scope]
		if l.ID != r.ID || l.Status != "succeeded" || string(l.Status) != r.Status {
			t.Errorf("ledger run %+v, want run %+v", l, r)
		}
	}
	// A discovered host gets a nuclei run exactly where something
	// listens: normally nowhere.
	want := map[string]bool{scope: true, shop1.URL: true, shop2.URL: true}
	for name, ip := range zone {
		host := strings.TrimSuffix(name, ".")
		for scheme, port := range map[string]string{"http": "80", "https": "443"} {
			if listening(net.JoinHostPort(ip, port)) {
				want[scheme+"://"+host] = true
			}
		}
	}
	for s, r := range runs {
		if !want[s] {
			t.Errorf("unexpected run %+v", r)
		}
		if s != scope && (r.Format != "nuclei" || r.Status != "succeeded") {
			t.Errorf("nuclei run %+v", r)
		}
	}
	if len(runs) != len(want) {
		t.Errorf("runs by scope %+v, want %v", runs, want)
	}
	if served {
		byRule := h.findings("http://www.example.test")
		t.Logf("findings of http://www.example.test: %v", ruleIDs(byRule))
		if f, ok := byRule["starpipe-git-config-exposure"]; !ok || f.Kind != "external" {
			t.Errorf("the shop on a discovered host: git config exposure %+v (present %v) among %v", f, ok, ruleIDs(byRule))
		}
	}
}

// sarifFindings is findings.sarif of the code test's repository: three
// results of two rules.
const sarifFindings = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"testscan","version":"1.0.0","rules":[
 {"id":"TS001","shortDescription":{"text":"SQL built from input"},"properties":{"security-severity":"8.1","tags":["security","external/cwe/cwe-89"]}},
 {"id":"TS002","shortDescription":{"text":"Hard-coded credential"},"properties":{"security-severity":"7.5","tags":["security","external/cwe/cwe-798"]}}]}},
 "results":[
 {"ruleId":"TS001","level":"error","message":{"text":"query built from request data"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"db/query.go"},"region":{"startLine":12}}}]},
 {"ruleId":"TS001","level":"error","message":{"text":"query built from request data"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"db/report.go"},"region":{"startLine":40}}}]},
 {"ruleId":"TS002","level":"warning","message":{"text":"password literal"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"config/config.go"},"region":{"startLine":7}}}]}]}]}
`

// newRepo commits findings.sarif to a git repository in a temporary
// directory and returns its path.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"README": "test repository\n", "findings.sarif": sarifFindings} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	sig := &object.Signature{Name: "test", Email: "test@example.invalid", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit("findings", &git.CommitOptions{Author: sig}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCodeScan fires a code schedule whose command prints the SARIF file
// committed in a local repository, and a second one whose command fails:
// the first stores its findings under the repository's scope; the second
// fails in the ledger with the command's error and stores no run. A scan
// request delivered again after it ended is not run again.
func TestCodeScan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := newRepo(t)
	ok := schedule("code", finding.KindCode)
	ok.Targets.Repositories = []string{repo}
	ok.Code.Analyzer = "cat-sarif"
	bad := schedule("code-broken", finding.KindCode)
	bad.Targets.Repositories = []string{repo}
	bad.Code.Analyzer = "fail"
	h.fire(h.startScheduler(ok, bad))

	scope := code.Scope(repo)
	es := h.waitLedger("code", 1)
	runs := h.waitRuns("code")
	r, found := runs[scope]
	if len(runs) != 1 || !found || r.Status != "succeeded" || r.Kind != "code" || r.Format != "sarif" {
		t.Fatalf("runs by scope %+v, want one succeeded SARIF run for %s", runs, scope)
	}
	if e := es[0]; e.Status != finding.LedgerSucceeded || e.RunID != r.ID {
		t.Fatalf("ledger row %+v, want succeeded with run %s", e, r.ID)
	}
	var n, observed int
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT count(*) FILTER (WHERE kind = 'code' AND status = 'open'), count(*) FROM findings WHERE scope = $1`, scope).Scan(&n, &observed); err != nil {
		t.Fatal(err)
	}
	if n != 3 || observed != 3 {
		t.Errorf("%d open code findings (%d in all) for %s, want 3", n, observed, scope)
	}

	es = h.waitLedger("code-broken", 1)
	if e := es[0]; e.Status != finding.LedgerFailed || e.RunID != "" || !strings.Contains(e.Error, "scan command failed") || !strings.Contains(e.Error, scope) {
		t.Errorf("ledger row of the failing command %+v", e)
	}
	var brokenRuns int
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT count(*) FROM scan_runs WHERE schedule_id = 'code-broken'`).Scan(&brokenRuns); err != nil {
		t.Fatal(err)
	}
	if brokenRuns != 0 {
		t.Errorf("%d scan runs of the failing command, want none", brokenRuns)
	}

	// Redelivery of the finished request (at-least-once delivery): nothing
	// runs again and the ledger keeps its outcome.
	var payload []byte
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT payload FROM outbox WHERE topic = $1 AND key = 'code'`, bus.TopicScanRequests).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if err := h.wk(h.ctx, bus.Message{Key: []byte("code"), Value: payload}); err != nil {
		t.Fatalf("handling the request again: %v", err)
	}
	var all int
	if err := storetest.SQL(h.t, h.st).QueryRow(h.ctx, `SELECT count(*) FROM scan_runs WHERE schedule_id = 'code'`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if es := h.waitLedger("code", 1); all != 1 || es[0].RunID != r.ID {
		t.Errorf("after redelivery: %d runs, ledger %+v", all, es[0])
	}
}

// claim records a due time of a new schedule in the ledger, as the
// scheduler does, and returns the scan request the scheduler would queue
// for it.
func claim(t *testing.T, st *store.Store, sp spec.Schedule) (int64, bus.Message) {
	t.Helper()
	if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{sp}, "test", spec.Options{Analyzers: slices.Collect(maps.Keys(testAnalyzers))}); err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(time.Minute).Truncate(time.Minute)
	c, err := st.ClaimDue(t.Context(), store.ClaimRequest{
		Schedule: sp.Name, Due: due, Now: due, AbandonBefore: due.Add(-time.Hour),
		Enqueue: func(context.Context, *store.Tx, store.Claim) error { return nil },
	})
	if err != nil || !c.Claimed {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	v, err := bus.Encode(bus.TypeScanRequest, scheduler.ScanRequest{LedgerID: c.LedgerID, Schedule: sp.Name, Version: c.Version, Due: due})
	if err != nil {
		t.Fatal(err)
	}
	return c.LedgerID, bus.Message{Key: []byte(sp.Name), Value: v}
}

// abandoningIntake is intake with a twist: while the scan's output is
// submitted, the scheduler gives the run up as abandoned (it ran past
// AbandonAfter).
type abandoningIntake struct {
	*pipeline.Intake
	st       *store.Store
	ledgerID int64
}

func (a abandoningIntake) Submit(ctx context.Context, r io.Reader, req pipeline.Request) (string, error) {
	if err := a.st.MarkLedger(ctx, a.ledgerID, finding.LedgerFailed, nil, "abandoned"); err != nil {
		return "", err
	}
	return a.Intake.Submit(ctx, r, req)
}

// TestAbandonedWhileRunning has a run succeed after its ledger row was
// marked failed: the worker keeps the recorded outcome and the request is
// done, rather than retried for ever on the conflict.
func TestAbandonedWhileRunning(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	repo := newRepo(t)
	sp := schedule("slow", finding.KindCode)
	sp.Targets.Repositories = []string{repo}
	sp.Code.Analyzer = "cat-sarif"
	id, msg := claim(t, st, sp)
	wk := worker.New(worker.Options{
		Submitter: abandoningIntake{pipeline.NewIntake(st, 64<<20, nil), st, id},
		Ledger:    st, StateDir: t.TempDir(), Logger: testLogger(t), ScannerPath: scanexectest.Binary(t),
		Analyzers: testAnalyzers, CodeWorkDir: codeWorkDir(t),
	})
	if err := wk.Handle(t.Context(), msg); err != nil {
		t.Fatalf("Handle = %v, want nil", err)
	}
	es, err := st.ListLedger(t.Context(), "slow", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Status != finding.LedgerFailed || es[0].Error != "abandoned" {
		t.Fatalf("ledger %+v, want the abandoned row kept", es)
	}
}

// testAnalyzers stand in for the admin's analyzers: section.
var testAnalyzers = map[string]config.AnalyzerConfig{
	"cat-sarif": {Command: []string{"sh", "-c", "cat findings.sarif"}},
	"fail":      {Command: []string{"sh", "-c", "exit 2"}},
	"true":      {Command: []string{"true"}},
}

// loopbackPolicy lets scans reach the tests' loopback targets.
var loopbackPolicy = netpolicy.New(netpolicy.Options{Allow: []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
}})

// testLogger sends warnings and errors (and info with -v) to the test log.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return testlog.New(t, level)
}

// fakeClock is the scheduler's fake clock, shared with its own tests.
type fakeClock = schedulertest.FakeClock

var newFakeClock = schedulertest.NewFakeClock

// crashingScanner runs the real scanner, except for the code scans of the
// repositories in crash: those become crash-test jobs of the given mode,
// run by the real starpipe-scanner with its test hooks enabled.
type crashingScanner struct {
	real, hooked, hanging worker.Scanner
	crash                 map[string]string // repository -> scanexec.Crash* mode
}

func (c crashingScanner) Run(ctx context.Context, job scanexec.Job, out io.Writer) error {
	if job.Code != nil {
		if mode, ok := c.crash[job.Code.Repository]; ok {
			r := c.hooked
			if mode == scanexec.CrashHang {
				r = c.hanging
			}
			return r.Run(ctx, scanexec.Job{Kind: scanexec.KindCrashTest, CrashTest: &scanexec.CrashTest{Mode: mode}}, out)
		}
	}
	return c.real.Run(ctx, job, out)
}

// TestScannerCrashes has the scanner process panic, die of SIGKILL and
// hang past its time limit (ignoring SIGTERM, with a helper in its process
// group): each fails its run with the scanner's last diagnostics in the
// ledger, and the worker then runs the next request as usual.
func TestScannerCrashes(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	log := testLogger(t)
	opt := worker.Options{
		Submitter: pipeline.NewIntake(st, 64<<20, nil),
		Ledger:    st, StateDir: t.TempDir(), Logger: log, ScannerPath: scanexectest.Binary(t),
		Analyzers: testAnalyzers, CodeWorkDir: codeWorkDir(t),
	}
	hooked := worker.NewRunner(opt, log)
	hooked.Env = []string{scanexec.TestHooksVar + "=1"}
	// The hanging scanner ignores SIGTERM and is stopped by this limit,
	// then killed after the short grace period. (Its runner is separate so
	// that the limit cannot cut the other crashes short on a slow machine.)
	hanging := worker.NewRunner(opt, log)
	hanging.Env = hooked.Env
	hanging.Timeout, hanging.GracePeriod = 2*time.Second, 100*time.Millisecond

	cases := []struct {
		name, mode string
		want       []string // in the ledger row's error
	}{
		{"crash-panic", scanexec.CrashPanic, []string{"scanner crashed", "exit status 2", "panic: crash test: a scanner library panicked", "crash test: panic"}},
		{"crash-kill", scanexec.CrashKill, []string{"scanner crashed", "signal: killed", "crash test: kill"}},
		{"crash-hang", scanexec.CrashHang, []string{"scanner timed out", "killed after 2s"}},
	}
	crash := map[string]string{}
	repos := map[string]string{}
	for _, c := range cases {
		repos[c.name] = newRepo(t)
		crash[repos[c.name]] = c.mode
	}
	opt.Scanner = crashingScanner{real: worker.NewRunner(opt, log), hooked: hooked, hanging: hanging, crash: crash}
	wk := worker.New(opt)

	handle := func(name, repo string) store.LedgerEntry {
		t.Helper()
		sp := schedule(name, finding.KindCode)
		sp.Targets.Repositories = []string{repo}
		sp.Code.Analyzer = "cat-sarif"
		_, msg := claim(t, st, sp)
		if err := wk.Handle(t.Context(), msg); err != nil {
			t.Fatalf("%s: Handle = %v, want nil (the outcome goes to the ledger)", name, err)
		}
		es, err := st.ListLedger(t.Context(), name, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			t.Fatalf("%s: ledger %+v, want one row", name, es)
		}
		return es[0]
	}
	for _, c := range cases {
		e := handle(c.name, repos[c.name])
		t.Logf("%s: %s", c.name, e.Error)
		if e.Status != finding.LedgerFailed || e.RunID != "" {
			t.Errorf("%s: ledger row %+v, want failed without a run", c.name, e)
		}
		for _, w := range c.want {
			if !strings.Contains(e.Error, w) {
				t.Errorf("%s: ledger error lacks %q:\n%s", c.name, w, e.Error)
			}
		}
	}
	// The worker is unaffected: the next request succeeds.
	if e := handle("after-crashes", newRepo(t)); e.Status != finding.LedgerSucceeded || e.RunID == "" {
		t.Fatalf("request after the crashes: ledger row %+v, want succeeded with a run", e)
	}
}

// codeWorkDir is a checkout directory the analyser's account can reach
// when the tests run as root (analysers then run as code.SandboxUser and
// t.TempDir()'s parent is 0700).
func codeWorkDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
