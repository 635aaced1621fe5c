package pipeline_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/starpipe/starpipe/config"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// rulesB replaces the default rules: every finding is linked to one
// control, for a reason no default rule gives.
const rulesB = `version: "4.0.13"
rules:
  - id: rules-b-only
    match: {any: true}
    controls: {"4.0.13": [TVM-08]}
    reason: "rules B: {{.RuleID}} is prioritised"
`

// TestRulesChangeKeepsPastEvidence ingests a file under the default rules
// (A), then changes the rules (B, a user rules file that maps differently)
// and ingests the same findings again: the first run's sightings still
// carry A's links and hash, the second run's carry B's, and the current
// view (control_links, a finding's controls) shows B's.
func TestRulesChangeKeepsPastEvidence(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{noConsumer: true})
	rulesA, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	b, err := mapping.LoadBytes("rules-b.yaml", []byte(rulesB), nil, false, mapping.WithAllVersions())
	if err != nil {
		t.Fatal(err)
	}
	if rulesA.RulesHash() == b.RulesHash() {
		t.Fatal("rules A and B hash alike")
	}
	rulesFile := filepath.Join(t.TempDir(), "rules-b.yaml")
	if err := os.WriteFile(rulesFile, []byte(rulesB), 0o600); err != nil {
		t.Fatal(err)
	}
	const scope = "git.example.com/evidence"
	data := genSARIF("synthscan", seq(0, 5))

	// Two ingest daemons in turn, as an operator changing mapping.file
	// and restarting would run them.
	_, stop := h.startDaemon([]string{config.RoleIngest}, nil, nil)
	run1 := h.submit(scope, data)
	h.waitRunStatus(run1, "succeeded", time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h.startDaemon([]string{config.RoleIngest}, nil, func(c *config.Config) { c.Mapping.File = rulesFile })
	run2 := h.submit(scope, data)
	h.waitRunStatus(run2, "succeeded", time.Minute)

	rows, err := storetest.SQL(h.t, h.st).Query(h.ctx, `SELECT id FROM findings WHERE scope = $1 ORDER BY id`, scope)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != 5 {
		t.Fatalf("findings of %s: %v (%v), want 5", scope, ids, err)
	}
	ruleIDs := func(links []store.ControlLink) []string {
		var out []string
		for _, l := range links {
			out = append(out, l.Rule)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	for _, id := range ids {
		d, err := h.st.GetFinding(h.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// What the finding shows now: B's links only.
		if got := ruleIDs(d.Controls); !slices.Equal(got, []string{"rules-b-only"}) {
			t.Errorf("finding %d: current links by rules %v, want only rules B's", id, got)
		}
		if len(d.Observations) != 2 {
			t.Fatalf("finding %d: %d observations, want 2", id, len(d.Observations))
		}
		for _, o := range d.Observations {
			switch o.RunID {
			case run1:
				got := ruleIDs(o.Controls)
				if o.RulesHash != rulesA.RulesHash() || !slices.Contains(got, "vulnerability-identification") || slices.Contains(got, "rules-b-only") {
					t.Errorf("finding %d, run 1 (rules A): hash %s, links by rules %v; want A's hash %s and A's links",
						id, o.RulesHash, got, rulesA.RulesHash())
				}
				for _, l := range o.Controls {
					if l.Reason == "" {
						t.Errorf("finding %d, run 1: link %+v has no reason", id, l)
					}
				}
			case run2:
				if got := ruleIDs(o.Controls); o.RulesHash != b.RulesHash() || !slices.Equal(got, []string{"rules-b-only"}) {
					t.Errorf("finding %d, run 2 (rules B): hash %s, links by rules %v; want B's", id, o.RulesHash, got)
				}
			default:
				t.Errorf("finding %d: observation of unknown run %s", id, o.RunID)
			}
		}
	}
	// The same through the views a report reads: control_links is the
	// present, observed_control_links the past.
	if n := h.count(`SELECT count(*) FROM control_links cl JOIN findings f ON f.id = cl.finding_id
		WHERE f.scope = $1 AND cl.rule_id <> 'rules-b-only'`, scope); n != 0 {
		t.Errorf("control_links holds %d links not made by rules B", n)
	}
	if n := h.count(`SELECT count(*) FROM observed_control_links WHERE run_id = $1::uuid AND rule_id = 'vulnerability-identification' AND rules_hash = $2`,
		run1, rulesA.RulesHash()); n < 5 {
		t.Errorf("observed_control_links holds %d identification links of run 1 under rules A, want at least one per finding", n)
	}
	if n := h.count(`SELECT count(*) FROM observed_control_links WHERE run_id = $1::uuid AND rule_id <> 'rules-b-only'`, run2); n != 0 {
		t.Errorf("observed_control_links holds %d links of run 2 not made by rules B", n)
	}
}
