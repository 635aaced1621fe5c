package worker_test

import (
	"context"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/scan/code"
	"github.com/starpipe/starpipe/scan/scanexec"
	"github.com/starpipe/starpipe/scan/worker"
	"github.com/starpipe/starpipe/scheduler"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// The tests here check that a scan request only names what to run: the
// worker runs the stored schedule, at the version the ledger row was
// claimed under, and nothing a message says beyond that.

// TestForgedRequests publishes scan requests straight to
// starpipe.scan.requests, as anyone able to write to the topic could,
// while a due time of a stored code schedule is pending. Requests that do
// not match the ledger row (another schedule, another version, another
// due time, an unknown row) go to the DLQ and leave the row alone; a
// request that matches it but carries a schedule definition of its own
// (another repository, a command) runs the stored schedule, and only it.
func TestForgedRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stored, elsewhere := newRepo(t), newRepo(t)
	sp := schedule("stored", finding.KindCode)
	sp.Targets.Repositories = []string{stored}
	sp.Code.Analyzer = "cat-sarif"
	// A second schedule whose ledger row the forged requests point at.
	other := schedule("other", finding.KindCode)
	other.Targets.Repositories = []string{elsewhere}
	other.Code.Analyzer = "cat-sarif"
	if _, err := scheduler.Apply(h.ctx, h.st, []spec.Schedule{sp, other}, "test", h.schedOpts); err != nil {
		t.Fatal(err)
	}
	// The scheduler's claim, without its request: the test sends them all.
	due := time.Now().Add(time.Hour).Truncate(time.Minute)
	c, err := h.st.ClaimDue(h.ctx, store.ClaimRequest{Schedule: "stored", Due: due, Now: due,
		Enqueue: func(context.Context, *store.Tx, store.Claim) error { return nil }})
	if err != nil || !c.Claimed || c.Version != 1 {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	genuine := map[string]any{"ledger_id": c.LedgerID, "schedule": "stored", "version": c.Version, "due": due}
	with := func(changes map[string]any) map[string]any {
		m := maps.Clone(genuine)
		maps.Copy(m, changes)
		return m
	}
	forgedSpec := map[string]any{
		"name": "stored", "kind": "code", "cadence": cadence,
		"targets": map[string]any{"repositories": []string{elsewhere}},
		"code":    map[string]any{"analyzer": "cat-sarif", "command": []string{"sh", "-c", "touch /tmp/owned"}},
	}
	poison := []struct {
		name string
		req  map[string]any
	}{
		{"another schedule", with(map[string]any{"schedule": "other"})},
		{"another version", with(map[string]any{"version": c.Version + 1})},
		{"another due time", with(map[string]any{"due": due.Add(time.Minute)})},
		{"catch-up flag", with(map[string]any{"catch_up": true})},
		{"unknown ledger row", with(map[string]any{"ledger_id": c.LedgerID + 1000})},
		{"no version, spec instead", func() map[string]any {
			m := with(map[string]any{"spec": forgedSpec})
			delete(m, "version")
			return m
		}()},
	}
	prod := bus.NewProducer(bus.Config{Brokers: h.broker.Addrs(), Partitions: 2}, h.log)
	t.Cleanup(func() { prod.Close() })
	publish := func(name string, req map[string]any) {
		t.Helper()
		v, err := bus.Encode(bus.TypeScanRequest, req)
		if err != nil {
			t.Fatal(err)
		}
		// One key, so that the requests are handled in the order sent.
		m := bus.Message{Key: []byte("stored"), Value: v, Headers: map[string]string{"case": name}}
		if err := prod.Publish(h.ctx, bus.TopicScanRequests, m); err != nil {
			t.Fatalf("publishing %s: %v", name, err)
		}
	}
	for _, p := range poison {
		publish(p.name, p.req)
	}
	// Last: the genuine identity with a definition of the forger's own.
	publish("spec in a matching request", with(map[string]any{"spec": forgedSpec, "command": []string{"sh"}}))

	es := h.waitLedger("stored", 1)
	runs := h.waitRuns("stored")
	scope := code.Scope(stored)
	r, ok := runs[scope]
	if len(runs) != 1 || !ok || r.Status != "succeeded" {
		t.Fatalf("runs by scope %+v, want one succeeded run of the stored repository %s", runs, scope)
	}
	if e := es[0]; e.Status != finding.LedgerSucceeded || e.RunID != r.ID || e.ScheduleVersion != 1 {
		t.Fatalf("ledger row %+v, want succeeded with run %s under version 1", e, r.ID)
	}
	var foreign int
	if err := storetest.SQL(t, h.st).QueryRow(h.ctx, `SELECT count(*) FROM scan_runs WHERE scope = $1`, code.Scope(elsewhere)).Scan(&foreign); err != nil {
		t.Fatal(err)
	}
	if foreign != 0 {
		t.Fatalf("%d runs of the repository named only by forged requests", foreign)
	}
	if es, err := h.st.ListLedger(h.ctx, "other", time.Time{}, time.Time{}); err != nil || len(es) != 0 {
		t.Fatalf("ledger of the other schedule %+v, %v: want untouched", es, err)
	}

	// Every mismatching request is in the DLQ, with the reason. They were
	// handled before the genuine one (same key), so they are there now.
	dlq := bus.NewConsumer(bus.Config{Brokers: h.broker.Addrs(), Partitions: 2}, "dlq-reader", bus.TopicDLQ, h.log)
	t.Cleanup(func() { dlq.Close() })
	fctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	got := map[string]string{}
	for len(got) < len(poison) {
		m, err := dlq.Fetch(fctx)
		if err != nil {
			t.Fatalf("reading the DLQ after %v: %v", got, err)
		}
		got[m.Headers["case"]] = m.Headers[bus.HeaderError]
	}
	for _, p := range poison {
		reason, ok := got[p.name]
		switch {
		case !ok:
			t.Errorf("%s: not in the DLQ (got %v)", p.name, got)
		case p.name == "unknown ledger row" && !strings.Contains(reason, "no such ledger row"),
			p.name == "no version, spec instead" && !strings.Contains(reason, "does not match its ledger row"),
			p.name != "unknown ledger row" && !strings.Contains(reason, "not run"):
			t.Errorf("%s: DLQ reason %q", p.name, reason)
		}
	}
}

// refusingScanner fails the test if any scan starts.
type refusingScanner struct{ t *testing.T }

func (r refusingScanner) Run(_ context.Context, job scanexec.Job, _ io.Writer) error {
	r.t.Errorf("a scan started: %+v", job.Kind)
	return nil
}

// TestStoredScheduleChecks hands the worker genuine requests whose stored
// schedule can no longer run as claimed. Each fails its ledger row with
// the reason, is not poison (the request itself was sound), and scans
// nothing.
func TestStoredScheduleChecks(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	all := spec.Options{Analyzers: slices.Collect(maps.Keys(testAnalyzers))}
	cases := []struct {
		name   string
		policy *spec.Options // nil: the worker's default, from its analysers
		// after runs between the claim and the request's handling.
		after func(t *testing.T, name string)
		want  string
	}{
		{"changed", nil, func(t *testing.T, name string) {
			sp := codeSchedule(name)
			sp.Targets.Repositories = []string{"/elsewhere"}
			if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{sp}, "test", all); err != nil {
				t.Fatal(err)
			}
		}, "changed since this run was due (version 1, now 2); not run"},
		{"disabled", nil, func(t *testing.T, name string) {
			sp := codeSchedule(name)
			sp.Enabled = new(bool)
			if _, err := scheduler.Apply(t.Context(), st, []spec.Schedule{sp}, "test", all); err != nil {
				t.Fatal(err)
			}
		}, "changed since this run was due (version 1, now 2)"},
		{"deleted", nil, func(t *testing.T, name string) {
			if err := st.DeleteSchedule(t.Context(), name, "test"); err != nil {
				t.Fatal(err)
			}
		}, "was deleted after this run was due; not run"},
		{"analyser no longer configured", &spec.Options{Analyzers: []string{"another"}}, nil,
			"not admitted by the daemon's configuration"},
		{"unreadable", nil, func(t *testing.T, name string) {
			// Written behind the store's back: the version does not move.
			if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE schedules SET spec = '"not a schedule"' WHERE name = $1`, name); err != nil {
				t.Fatal(err)
			}
		}, "unreadable stored definition"},
		{"claimed before versions", nil, func(t *testing.T, name string) {
			if _, err := storetest.SQL(t, st).Exec(t.Context(), `UPDATE schedule_ledger SET schedule_version = NULL WHERE schedule = $1`, name); err != nil {
				t.Fatal(err)
			}
		}, "claimed before schedules had versions"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "check-" + string(rune('a'+i))
			id, msg := claim(t, st, codeSchedule(name))
			if c.after != nil {
				c.after(t, name)
			}
			sc := refusingScanner{t: t}
			wk := worker.New(worker.Options{
				Submitter: pipeline.NewIntake(st, 64<<20, nil),
				Ledger:    st, StateDir: t.TempDir(), Logger: testLogger(t),
				Analyzers: testAnalyzers, Scanner: sc, Policy: c.policy,
			})
			if err := wk.Handle(t.Context(), msg); err != nil {
				t.Fatalf("Handle = %v, want nil (the outcome is in the ledger)", err)
			}
			e, err := st.GetLedgerEntry(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if e.Status != finding.LedgerFailed || len(e.Runs) != 0 || !strings.Contains(e.Error, c.want) {
				t.Fatalf("ledger row %+v, want failed without runs, the error naming %q", e, c.want)
			}
			// Redelivered, the request changes nothing.
			if err := wk.Handle(t.Context(), msg); err != nil {
				t.Fatalf("Handle again = %v", err)
			}
		})
	}
}

func codeSchedule(name string) spec.Schedule {
	sp := schedule(name, finding.KindCode)
	sp.Targets.Repositories = []string{"/nonexistent"}
	sp.Code.Analyzer = "true"
	return sp
}
