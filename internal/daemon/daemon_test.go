package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/testlog"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// The tests here build daemons as serve does, on a real PostgreSQL
// (storetest) and the Kafka protocol through the embedded kfake broker.

func TestMain(m *testing.M) { storetest.Main(m) }

// env is a database and a broker that daemons of one test share.
type env struct {
	t      *testing.T
	st     *store.Store
	dbURL  string
	broker *bus.Embedded
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// The test reads through st; the daemons open pools of their own.
	st, url := storetest.New(t)
	b, err := bus.StartEmbedded(t.Context(), bus.EmbeddedConfig{Partitions: 2, GroupMinSessionTimeout: 500 * time.Millisecond}, testlog.New(t, slog.LevelError))
	if err != nil {
		t.Fatalf("starting embedded broker: %v", err)
	}
	t.Cleanup(b.Close)
	return &env{t: t, st: st, dbURL: url, broker: b}
}

// config is a daemon configuration for roles on the env's database and
// broker, with its own state directory and a free listen port.
func (e *env) config(roles ...string) config.Config {
	cfg := config.Default()
	cfg.StateDir = e.t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Database.URL = e.dbURL
	cfg.Database.MaxConns = 8
	cfg.Kafka.Brokers = e.broker.Addrs()
	cfg.Kafka.Partitions = 2
	cfg.ShutdownTimeout = 30 * time.Second
	cfg.ShutdownDelay = 0
	cfg.Ingest.BatchSize = 500
	cfg.Roles = roles
	return cfg
}

// testOptions shorten the Kafka clients' timings, as a test needs.
func testOptions(t *testing.T) []Option {
	return []Option{
		WithLogger(testlog.New(t, slog.LevelWarn)),
		WithBusConfig(func(c *bus.Config) {
			c.SessionTimeout = 2 * time.Second
			c.HeartbeatInterval = 200 * time.Millisecond
		}),
		WithRunOptions(func(_ string, ro *bus.RunOptions) {
			ro.InitialBackoff, ro.MaxBackoff = 50*time.Millisecond, time.Second
		}),
		WithRelayOptions(relay.WithPollInterval(200 * time.Millisecond)),
	}
}

// started is a running daemon.
type started struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, once done is closed
}

// start builds and runs a daemon; the test's end stops it if the test did
// not.
func start(t *testing.T, cfg config.Config, opts ...Option) *started {
	t.Helper()
	d, err := New(t.Context(), cfg, append(testOptions(t), opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return run(t, d)
}

func run(t *testing.T, d *Daemon) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	s := &started{d: d, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = d.Run(ctx)
	}()
	t.Cleanup(func() { _ = s.stop() })
	return s
}

// stop cancels the daemon, as SIGTERM does, and returns Run's result.
func (s *started) stop() error {
	s.cancel()
	return s.wait()
}

// wait returns Run's result once it returned.
func (s *started) wait() error {
	<-s.done
	return s.err
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// bound reports whether something listens on addr.
func bound(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// A replica without the api role binds no port; one with it binds listen.
func TestRolesDecideTheParts(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	for _, tc := range []struct {
		roles []string
		parts []string
		http  bool
	}{
		{[]string{config.RoleIngest}, []string{"kafka topics", "ingest consumer"}, false},
		{[]string{config.RoleRelay, config.RoleScheduler}, []string{"kafka topics", "relay", "scheduler", "sla watcher"}, false},
		{[]string{config.RoleAPI}, []string{"artifact sweep", "http"}, true},
		{config.AllRoles(), []string{"kafka topics", "artifact sweep", "relay", "ingest consumer", "scheduler", "worker", "sla watcher", "http"}, true},
	} {
		t.Run(strings.Join(tc.roles, ","), func(t *testing.T) {
			cfg := e.config(tc.roles...)
			cfg.Listen = freeAddr(t)
			d, err := New(t.Context(), cfg, testOptions(t)...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := strings.Join(d.Parts(), ","); got != strings.Join(tc.parts, ",") {
				t.Errorf("parts %q, want %q", got, tc.parts)
			}
			if got := d.Addr() != nil; got != tc.http {
				t.Errorf("listener %v, want %v", d.Addr(), tc.http)
			}
			s := run(t, d)
			if got := bound(cfg.Listen); got != tc.http {
				t.Errorf("listen address %s bound: %v, want %v", cfg.Listen, got, tc.http)
			}
			if err := s.stop(); err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			if bound(cfg.Listen) {
				t.Errorf("listen address %s still bound after Run returned", cfg.Listen)
			}
		})
	}
}

// A build error part-way closes what was built: the listener of a second
// daemon on a busy port fails New, and the first part (the store) is
// closed, which the leak check sees.
func TestBuildErrorClosesWhatWasBuilt(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := e.config(config.AllRoles()...)
	cfg.Listen = busy.Addr().String()
	d, err := New(t.Context(), cfg, testOptions(t)...)
	if err == nil || !strings.Contains(err.Error(), "listen on") || d != nil {
		t.Fatalf("New on a busy port = %v, %v; want a listen error", d, err)
	}
	cfg = e.config(config.RoleIngest)
	cfg.Kafka.Brokers = nil
	if _, err := New(t.Context(), cfg, testOptions(t)...); err == nil || !strings.Contains(err.Error(), "kafka.brokers") {
		t.Fatalf("New without brokers for ingest = %v", err)
	}
}

// The first part to fail stops the rest, and Run returns its error.
func TestFirstFailureStopsTheRest(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	cfg := e.config(config.RoleAPI, config.RoleIngest, config.RoleRelay, config.RoleScheduler)
	d, err := New(t.Context(), cfg, testOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	addr := d.Addr().String()
	d.add(part{name: "failing", stage: stageBackground, run: func(ctx context.Context) error {
		// Fail once the daemon is up and serving.
		for {
			if res, err := http.Get("http://" + addr + "/readyz"); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return errBoom
				}
			}
			if !sleep(ctx, 20*time.Millisecond) {
				return nil
			}
		}
	}})
	s := run(t, d)
	err = s.wait()
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "failing") {
		t.Fatalf("Run = %v, want the failing part's error", err)
	}
	if bound(addr) {
		t.Fatalf("HTTP still listening on %s after Run returned", addr)
	}
}

// Shutdown order: when intake stops, /readyz already answers 503 and HTTP
// still serves (uploads answer 503); HTTP closes after.
func TestShutdownOrder(t *testing.T) {
	noLeaks(t)
	e := newEnv(t)
	cfg := e.config(config.RoleAPI, config.RoleIngest, config.RoleRelay)
	d, err := New(t.Context(), cfg, testOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	token, err := d.Store().CreateToken(t.Context(), "t", "admin")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + d.Addr().String()
	type probe struct {
		ready, upload int
		err           error
	}
	probed := make(chan probe, 1)
	// An intake part: it is interrupted when intake stops, before HTTP.
	d.add(part{name: "probe", stage: stageIntake, run: func(ctx context.Context) error {
		<-ctx.Done()
		var p probe
		res, err := http.Get(base + "/readyz")
		if err != nil {
			p.err = err
			probed <- p
			return nil
		}
		res.Body.Close()
		p.ready = res.StatusCode
		req, _ := http.NewRequest("POST", base+"/v1/runs?scope=x", strings.NewReader(`{"version":"2.1.0","runs":[]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		if res, err = http.DefaultClient.Do(req); err != nil {
			p.err = err
		} else {
			res.Body.Close()
			p.upload = res.StatusCode
		}
		probed <- p
		return nil
	}})
	s := run(t, d)
	waitFor(t, "/readyz to answer 200", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	if err := s.stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	p := <-probed
	if p.err != nil || p.ready != http.StatusServiceUnavailable || p.upload != http.StatusServiceUnavailable {
		t.Fatalf("while intake stopped: readyz %d, upload %d, err %v; want HTTP serving, both 503", p.ready, p.upload, p.err)
	}
	if bound(d.Addr().String()) {
		t.Fatal("HTTP still listening after Run returned")
	}
}

// SIGTERM (a cancel) during a 100k-finding ingest: Run returns nil within
// shutdown_timeout (Run returns an error when a part did not stop in
// time), and a second daemon on the same database and broker completes
// the run with exact counts.
func TestCancelDuringLargeIngestAndRestart(t *testing.T) {
	noLeaks(t)
	const n = 100_000
	e := newEnv(t)
	cfg := e.config(config.RoleIngest, config.RoleRelay)
	cfg.ShutdownTimeout = 20 * time.Second
	first := start(t, cfg)
	st := e.st
	const scope = "git.example.com/acme/restart"
	runID, err := first.d.Intake().Submit(t.Context(), bytes.NewReader(genSARIF(n)), pipeline.Request{Scope: scope, FileName: "big.sarif"})
	if err != nil {
		t.Fatal(err)
	}
	batches := func() int {
		var b int
		if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	waitFor(t, "the run to be part-way stored", func() bool { return batches() >= 5 })
	began := time.Now()
	if err := first.stop(); err != nil {
		t.Fatalf("Run after cancel mid-ingest: %v", err)
	}
	stoppedAt := batches()
	t.Logf("stopped in %v with %d of %d batches stored", time.Since(began).Round(time.Millisecond), stoppedAt, n/500)
	if stoppedAt >= n/500 {
		t.Fatalf("the run finished before the cancel took effect: the test proves nothing")
	}

	second := start(t, e.config(config.RoleIngest, config.RoleRelay))
	st2 := e.st
	q := func(sql string, args ...any) int {
		t.Helper()
		var c int
		if err := storetest.SQL(t, st2).QueryRow(t.Context(), sql, args...).Scan(&c); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return c
	}
	var status string
	waitFor(t, "the run to succeed after the restart", func() bool {
		if err := storetest.SQL(t, st2).QueryRow(t.Context(), `SELECT status FROM scan_runs WHERE id = $1::uuid`, runID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == "failed" {
			t.Fatalf("run failed after the restart")
		}
		return status == "succeeded"
	})
	got := map[string]int{
		"findings":       q(`SELECT count(*) FROM findings WHERE scope = $1`, scope),
		"observations":   q(`SELECT count(*) FROM observations WHERE run_id = $1::uuid`, runID),
		"batches":        q(`SELECT count(*) FROM run_batches WHERE run_id = $1::uuid`, runID),
		"batches_stored": q(`SELECT batches_stored FROM scan_runs WHERE id = $1::uuid`, runID),
		"opened":         q(`SELECT count(*) FROM activity_log WHERE run_id = $1::uuid AND action = 'finding.opened'`, runID),
		"events":         q(`SELECT count(*) FROM outbox WHERE topic = $1 AND convert_from(payload, 'UTF8')::jsonb->'payload'->>'run_id' = $2`, bus.TopicFindingEvents, runID),
	}
	want := map[string]int{"findings": n, "observations": n, "batches": n / 500, "batches_stored": n / 500, "opened": n, "events": n}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the restart: %v, want %v", got, want)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("second daemon: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a hang, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if !sleep(t.Context(), 20*time.Millisecond) {
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// genSARIF is a SARIF log with n distinct results (the shape of
// ingest/pipeline's benchmark input).
func genSARIF(n int) []byte {
	var b bytes.Buffer
	b.Grow(n*420 + 8192)
	const rules = 20
	b.WriteString(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"synthscan","version":"1.0","rules":[`)
	sev := []string{"9.8", "7.5", "5.3", "3.1", "8.1"}
	for r := range rules {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"SYN%03d","shortDescription":{"text":"Synthetic rule %d"},"properties":{"security-severity":%q,"tags":["security","external/cwe/cwe-79"]}}`, r, r, sev[r%len(sev)])
	}
	b.WriteString(`]}},"results":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"ruleId":"SYN%03d","level":"warning","message":{"text":"Synthetic finding %d."},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"src/pkg%d/file%d.go"},"region":{"startLine":%d}}}],"partialFingerprints":{"primaryLocationLineHash":"%016x:1"}}`,
			i%rules, i, i%97, i, i%5000+1, uint64(i)*0x9e3779b97f4a7c15)
	}
	b.WriteString(`]}]}`)
	return b.Bytes()
}
