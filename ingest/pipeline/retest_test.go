package pipeline_test

import (
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// TestRetestsThroughThePipeline: retests asked for before a rescan are
// answered when the rescan completes in the real pipeline (PostgreSQL,
// kfake, relay and consumer): passed for the finding it no longer sees
// (resolved by that run), failed for one it sees again (still open), each
// with a system activity row and a retested event; a manual finding of the
// same scope and kind is left open.
func TestRetestsThroughThePipeline(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const scope, tool = "git.example.com/acme/retest", "synthscan"
	ctx := h.ctx
	base := h.submit(scope, genSARIF(tool, seq(0, 4)))
	h.waitRunStatus(base, "succeeded", runTimeout)
	ids := h.findingIDs(scope)
	if len(ids) != 4 {
		t.Fatalf("%d findings after the baseline, want 4", len(ids))
	}
	gone, stays := ids["SYN000"], ids["SYN001"]

	var manual store.ManualResult
	if err := h.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		manual, err = store.CreateManualFinding(ctx, tx, finding.Finding{
			Fingerprint: "manual-1", Scope: scope, Kind: finding.KindCode, Tool: store.ToolManual, RuleID: store.ToolManual,
			Title: "Hard-coded admin password in the wiki", Severity: finding.SeverityHigh,
		}, nil, "pentester", time.Now(), store.DefaultSLA())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{gone, stays} {
		if err := h.st.InTx(ctx, func(tx *store.Tx) error {
			_, _, err := store.RequestRetest(ctx, tx, id, "alice", time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	// The rescan no longer sees the first finding (the SARIF ids map to
	// findings in order).
	run := h.submit(scope, genSARIF(tool, seq(1, 4)))
	h.waitRunStatus(run, "succeeded", runTimeout)

	result := func(id int64) string {
		rts, err := h.st.ListRetests(ctx, id)
		if err != nil || len(rts) != 1 {
			t.Fatalf("retests of %d: %+v, %v", id, rts, err)
		}
		if rts[0].RunID == nil || *rts[0].RunID != run {
			t.Fatalf("retest of %d answered by %v, want %s", id, rts[0].RunID, run)
		}
		return rts[0].Result
	}
	if r := result(gone); r != store.RetestPassed {
		t.Fatalf("retest of the finding the rescan no longer saw: %s", r)
	}
	if r := result(stays); r != store.RetestFailed {
		t.Fatalf("retest of the finding the rescan saw: %s", r)
	}
	if n := h.count(`SELECT count(*) FROM findings WHERE id = $1 AND status = 'resolved' AND resolved_by_run = $2::uuid`, gone, run); n != 1 {
		t.Fatal("the passed retest's finding is not resolved by the rescan")
	}
	if n := h.count(`SELECT count(*) FROM findings WHERE id = ANY($1) AND status = 'open'`, []int64{stays, manual.Finding.ID}); n != 2 {
		t.Fatal("the failed retest's finding or the manual finding is not open")
	}
	if n := h.count(`SELECT count(*) FROM activity_log WHERE actor = 'system' AND run_id = $1::uuid
		AND action IN ('finding.retest_passed', 'finding.retest_failed')`, run); n != 2 {
		t.Fatalf("%d retest activity rows, want 2", n)
	}
	if n := h.count(`SELECT count(*) FROM outbox WHERE topic = $1 AND convert_from(payload, 'UTF8')::jsonb->>'type' = $2`,
		bus.TopicFindingEvents, bus.TypeRetested); n != 2 {
		t.Fatalf("%d retested events, want 2", n)
	}
}

// findingIDs maps the rule ids of scope's scanned findings to their ids.
func (h *harness) findingIDs(scope string) map[string]int64 {
	h.t.Helper()
	rows, _, err := h.st.ListFindings(h.ctx, store.FindingFilter{Scope: scope, Limit: 100})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range rows {
		if r.Tool != store.ToolManual {
			out[r.Rule] = r.ID
		}
	}
	return out
}
