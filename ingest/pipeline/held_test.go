package pipeline_test

import (
	"errors"
	"testing"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store"
)

// TestHeldRuns runs the hold through the real pipeline (PostgreSQL, kfake,
// relay and consumer, default policy: half the open findings and five at
// least): an empty report of the same tool is held with nothing resolved;
// releasing applies its resolutions with events and activity by the
// releaser; discarding resolves nothing; small or partial rescans resolve
// as before; and a release spares what a later run saw.
func TestHeldRuns(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	held := pipeline.NewHeldRuns(h.st, h.log)
	const tool = "synthscan"

	// baseline uploads ids for scope and waits for it to succeed.
	baseline := func(scope string, ids []int) string {
		t.Helper()
		id := h.submit(scope, genSARIF(tool, ids))
		h.waitRunStatus(id, "succeeded", runTimeout)
		if n := h.countFindings(scope, "open"); n != len(ids) {
			t.Fatalf("%s: %d open findings after the baseline, want %d", scope, n, len(ids))
		}
		return id
	}
	// events counts the outbox's finding events of type typ for run.
	events := func(typ, runID string) int {
		return h.count(`SELECT count(*) FROM outbox WHERE topic = $1
			AND convert_from(payload, 'UTF8')::jsonb->>'type' = $2
			AND convert_from(payload, 'UTF8')::jsonb->'payload'->>'run_id' = $3`, bus.TopicFindingEvents, typ, runID)
	}
	activity := func(action, actor, runID string) int {
		return h.count(`SELECT count(*) FROM activity_log WHERE action = $1 AND actor = $2 AND run_id = $3::uuid`, action, actor, runID)
	}

	t.Run("empty report is held, release resolves", func(t *testing.T) {
		const scope = "git.example.com/acme/held-release"
		baseline(scope, seq(0, 6))
		run := h.submit(scope, genSARIF(tool, nil))
		h.waitRunStatus(run, "held", runTimeout)
		if n := h.countFindings(scope, "open"); n != 6 {
			t.Fatalf("held run: %d open findings, want 6", n)
		}
		if got := h.tally(run, scope); got.Resolved != 0 || got.Events != 1 {
			t.Fatalf("held run: %+v, want nothing resolved and one run-held event", got)
		}
		if events(bus.TypeRunHeld, run) != 1 || activity("run.held", "system", run) != 1 {
			t.Fatal("held run: no run-held event or activity row")
		}
		if c := h.count(`SELECT count(*) FROM scan_runs WHERE id = $1::uuid AND hold_would_resolve = 6 AND hold_open = 6`, run); c != 1 {
			t.Fatal("held run: counts not recorded")
		}

		d, err := held.Release(h.ctx, run, "alice")
		if err != nil {
			t.Fatalf("Release: %v", err)
		}
		if d.Status != finding.RunSucceeded || d.Resolved != 6 || d.WouldResolve != 6 || d.Open != 6 {
			t.Fatalf("Release = %+v", d)
		}
		h.waitRunStatus(run, "succeeded", runTimeout)
		if n := h.count(`SELECT count(*) FROM findings WHERE scope = $1 AND status = 'resolved' AND resolved_by_run = $2::uuid`, scope, run); n != 6 {
			t.Fatalf("release: %d findings resolved by the run, want 6", n)
		}
		if events(bus.TypeResolved, run) != 6 || events(bus.TypeRunReleased, run) != 1 {
			t.Fatalf("release: %d resolved and %d run-released events, want 6 and 1", events(bus.TypeResolved, run), events(bus.TypeRunReleased, run))
		}
		if activity("finding.resolved", "alice", run) != 6 || activity("run.released", "alice", run) != 1 {
			t.Fatal("release: activity rows missing or not by the releaser")
		}
		if c := h.count(`SELECT count(*) FROM scan_runs WHERE id = $1::uuid AND decided_by = 'alice' AND decided_at IS NOT NULL`, run); c != 1 {
			t.Fatal("release: decider not recorded")
		}
		// Released once: a second release is refused and changes nothing.
		if _, err := held.Release(h.ctx, run, "alice"); !isRunState(err, finding.RunSucceeded) {
			t.Fatalf("second release: %v, want a run state error", err)
		}
		if _, err := held.Discard(h.ctx, run, "alice"); !isRunState(err, finding.RunSucceeded) {
			t.Fatalf("discard after release: %v, want a run state error", err)
		}

		// The relay delivers the hold, the resolutions and the release.
		h.waitFor("outbox drained", runTimeout, func() bool { return h.count(`SELECT count(*) FROM outbox WHERE sent_at IS NULL`) == 0 })
		want := map[string]int{bus.TypeRunHeld: 1, bus.TypeResolved: 6, bus.TypeRunReleased: 1}
		got := map[string]int{}
		for _, m := range h.readTopic(bus.TopicFindingEvents, h.count(`SELECT count(*) FROM outbox WHERE topic = $1`, bus.TopicFindingEvents), runTimeout) {
			env, err := bus.Decode(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := want[env.Type]; ok && (string(m.Key) == run || env.Type == bus.TypeResolved) {
				var ev struct {
					RunID string `json:"run_id"`
				}
				if err := env.Unmarshal(&ev); err != nil {
					t.Fatal(err)
				}
				if ev.RunID == run {
					got[env.Type]++
				}
			}
		}
		for typ, n := range want {
			if got[typ] != n {
				t.Fatalf("delivered events of run: %v, want %v", got, want)
			}
		}
	})

	t.Run("discard resolves nothing", func(t *testing.T) {
		const scope = "git.example.com/acme/held-discard"
		baseline(scope, seq(0, 6))
		run := h.submit(scope, genSARIF(tool, nil))
		h.waitRunStatus(run, "held", runTimeout)
		d, err := held.Discard(h.ctx, run, "bob")
		if err != nil {
			t.Fatalf("Discard: %v", err)
		}
		if d.Status != finding.RunDiscarded || d.Resolved != 0 {
			t.Fatalf("Discard = %+v", d)
		}
		if c := h.count(`SELECT count(*) FROM scan_runs WHERE id = $1::uuid AND status = 'discarded' AND decided_by = 'bob'`, run); c != 1 {
			t.Fatal("discard: run not discarded by bob")
		}
		if n := h.countFindings(scope, "open"); n != 6 {
			t.Fatalf("discard: %d open findings, want 6", n)
		}
		if events(bus.TypeRunDiscarded, run) != 1 || events(bus.TypeResolved, run) != 0 || activity("run.discarded", "bob", run) != 1 {
			t.Fatal("discard: want one run-discarded event and activity row, no resolutions")
		}
		if _, err := held.Release(h.ctx, run, "bob"); !isRunState(err, finding.RunDiscarded) {
			t.Fatalf("release after discard: %v, want a run state error", err)
		}
	})

	t.Run("below hold_min resolves", func(t *testing.T) {
		const scope = "git.example.com/acme/held-small"
		baseline(scope, seq(0, 4))
		run := h.submit(scope, genSARIF(tool, nil))
		h.waitRunStatus(run, "succeeded", runTimeout)
		if n := h.countFindings(scope, "resolved"); n != 4 {
			t.Fatalf("%d resolved, want 4", n)
		}
	})

	t.Run("rescan missing two of ten resolves", func(t *testing.T) {
		const scope = "git.example.com/acme/held-partial"
		baseline(scope, seq(0, 10))
		run := h.submit(scope, genSARIF(tool, seq(2, 10)))
		h.waitRunStatus(run, "succeeded", runTimeout)
		if got := h.tally(run, scope); got.Resolved != 2 || got.Events != 2 {
			t.Fatalf("rescan: %+v, want 2 resolved with 2 events", got)
		}
		if n := h.countFindings(scope, "open"); n != 8 {
			t.Fatalf("%d open, want 8", n)
		}
	})

	t.Run("release spares what a later run saw", func(t *testing.T) {
		const scope = "git.example.com/acme/held-later"
		baseline(scope, seq(0, 12))
		first := h.submit(scope, genSARIF(tool, nil))
		h.waitRunStatus(first, "held", runTimeout)
		// A later run sees three of the twelve: it would resolve nine,
		// and is held too.
		later := h.submit(scope, genSARIF(tool, seq(0, 3)))
		h.waitRunStatus(later, "held", runTimeout)

		d, err := held.Release(h.ctx, first, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if d.Resolved != 9 {
			t.Fatalf("release of the first: resolved %d, want 9 (not the 3 the later run saw)", d.Resolved)
		}
		if n := h.count(`SELECT count(*) FROM findings f WHERE f.scope = $1 AND f.status = 'open'
			AND EXISTS (SELECT 1 FROM observations o WHERE o.finding_id = f.id AND o.run_id = $2::uuid)`, scope, later); n != 3 {
			t.Fatalf("%d findings the later run saw are open, want 3", n)
		}
		d, err = held.Release(h.ctx, later, "alice")
		if err != nil || d.Resolved != 0 {
			t.Fatalf("release of the later run: %+v, %v; want nothing left to resolve", d, err)
		}
		if n := h.countFindings(scope, "open"); n != 3 {
			t.Fatalf("%d open, want 3", n)
		}
	})

	t.Run("unknown run", func(t *testing.T) {
		for _, id := range []string{"7c1e5f0c-1b1a-4c7e-9a52-0d4c1f1d2e3a", "not-a-uuid"} {
			if _, err := held.Release(h.ctx, id, "alice"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Release(%s) = %v, want ErrNotFound", id, err)
			}
		}
	})
}

func isRunState(err error, status finding.RunStatus) bool {
	rs, ok := errors.AsType[*store.RunStateError](err)
	return ok && rs.Status == status && rs.Want == finding.RunHeld
}
