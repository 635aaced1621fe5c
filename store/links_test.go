package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestControlLinksFollowCurrentMapping checks that a finding seen again
// carries exactly the links its latest mapping gave: a control the rules
// no longer attach disappears instead of lingering as stale evidence, and
// a replayed link set does not duplicate.
func TestControlLinksFollowCurrentMapping(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	sha, err := s.PutArtifact(ctx, nil, strings.NewReader("x"), "sarif")
	if err != nil {
		t.Fatal(err)
	}
	f := finding.Finding{
		Fingerprint: "fp", Scope: "repo", Kind: finding.KindCode, Tool: "t", RuleID: "r", Title: "t",
		Controls: []finding.ControlLink{
			{Version: "4.0.13", Control: "TVM-07", Rule: "a", Reason: "one"},
			{Version: "4.0.13", Control: "AIS-05", Rule: "b", Reason: "two"},
		},
	}
	ingest := func(f finding.Finding) {
		t.Helper()
		run := uuid.NewString()
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if err := store.CreateRun(ctx, tx, store.NewRun{ID: run, Kind: "code", Scope: "repo", Tool: "t", Format: "sarif", ArtifactSHA: sha}); err != nil {
				return err
			}
			_, err := store.UpsertFindings(ctx, tx, run, []finding.Finding{f, f}, time.Now(), nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	links := func() []string {
		t.Helper()
		rows, err := storetest.SQL(t, s).Query(ctx, `SELECT control_id || '/' || rule_id FROM control_links ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ingest(f)
	if got := strings.Join(links(), ","); got != "AIS-05/b,TVM-07/a" {
		t.Fatalf("first ingest links = %s", got)
	}
	ingest(f) // seen again with the same mapping: no duplicates
	if got := strings.Join(links(), ","); got != "AIS-05/b,TVM-07/a" {
		t.Fatalf("after a rescan links = %s", got)
	}
	f.Controls = f.Controls[:1] // the rules no longer attach AIS-05
	ingest(f)
	if got := strings.Join(links(), ","); got != "TVM-07/a" {
		t.Fatalf("after a mapping change links = %s", got)
	}
}

// TestListTokens lists tokens without their secrets, revoked ones marked.
func TestListTokens(t *testing.T) {
	t.Parallel()
	s, _ := storetest.New(t)
	ctx := t.Context()
	tok, err := s.CreateToken(ctx, "ci", store.RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(ctx, "ops", store.RoleOperator); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "ops", "test"); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "ci" || list[0].Role != store.RoleIngest || list[0].RevokedAt != nil || list[1].RevokedAt == nil {
		t.Fatalf("tokens = %+v", list)
	}
	if strings.Contains(fmt.Sprintf("%+v", list), tok) {
		t.Fatal("a token listing shows the token")
	}
}
