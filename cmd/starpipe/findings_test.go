package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// apiAuth adapts store tokens to the API the way the daemon does.
type apiAuth struct{ st *store.Store }

func (a apiAuth) Authenticate(ctx context.Context, token string) (api.Principal, error) {
	p, err := a.st.Authenticate(ctx, token)
	if errors.Is(err, store.ErrUnauthenticated) {
		return api.Principal{}, api.ErrUnauthenticated
	}
	if err != nil {
		return api.Principal{}, err
	}
	return api.Principal{ID: p.ID, Name: p.Actor(), Role: p.Role, User: p.User, Scopes: p.Scopes, Kinds: p.Kinds}, nil
}

// reviewServer is the real API over a real database holding two findings
// of scope repo: "ais" linked to AIS-07 (and TVM-07), "tvm" to TVM-07 only;
// ann owns domain AIS and has a token acting as her (annTok), admin is an
// admin service token.
type reviewServer struct {
	st              *store.Store
	url             string
	admin, annTok   string
	aisID, tvmID    int64
	tokFile, server string
}

func newReviewServer(t *testing.T) *reviewServer {
	t.Helper()
	st, _ := storetest.New(t)
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.New(api.Options{Auth: apiAuth{st}, Store: st, Catalogs: cats}))
	t.Cleanup(ts.Close)
	rs := &reviewServer{st: st, url: ts.URL}
	ctx := t.Context()
	if rs.admin, err = st.CreateToken(ctx, "test-admin", store.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, nil, "test", store.NewUser{Name: "ann", Email: "ann@example.com", Role: store.RoleOwner},
		[]store.Ownership{{Domain: "AIS", Scopes: []string{}}}); err != nil {
		t.Fatal(err)
	}
	if rs.annTok, err = st.IssueToken(ctx, store.TokenSpec{Name: "ann-cli", User: "ann"}, "test"); err != nil {
		t.Fatal(err)
	}
	rs.tokFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(rs.tokFile, []byte(rs.annTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var runID string
	at := time.Now().Add(-time.Hour)
	if err := storetest.SQL(t, st).QueryRow(ctx, `
		INSERT INTO scan_runs (kind, scope, tool, format, status, created_at, stats)
		VALUES ('code', 'repo', 'semgrep', 'sarif', 'processing', $1, '{"tools":["semgrep"]}') RETURNING id::text`, at).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	mk := func(fp string, links ...finding.ControlLink) finding.Finding {
		for i := range links {
			links[i].Rule, links[i].Reason = "test", "set by the test"
		}
		return finding.Finding{Fingerprint: fp, Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "rule-" + fp,
			Title: "title " + fp, Severity: finding.SeverityHigh, Controls: links,
			Location: finding.Location{Kind: finding.LocationFile, URI: "src/" + fp + ".go", StartLine: 1}}
	}
	fs := []finding.Finding{
		mk("ais", finding.ControlLink{Version: "4.0.13", Control: "AIS-07"}, finding.ControlLink{Version: "4.0.13", Control: "TVM-07"}),
		mk("tvm", finding.ControlLink{Version: "4.0.13", Control: "TVM-07"}),
	}
	err = st.InTx(ctx, func(tx *store.Tx) error {
		sla := store.DefaultSLA()
		res, err := store.UpsertFindings(ctx, tx, runID, fs, at, &sla)
		if err != nil {
			return err
		}
		for _, r := range res {
			switch r.Fingerprint {
			case "ais":
				rs.aisID = r.ID
			case "tvm":
				rs.tvmID = r.ID
			}
		}
		_, err = store.Reconcile(ctx, tx, runID, sla, store.DefaultHoldPolicy())
		return err
	})
	if err != nil || rs.aisID == 0 || rs.tvmID == 0 {
		t.Fatalf("storing findings: %v (ids %d, %d)", err, rs.aisID, rs.tvmID)
	}
	return rs
}

// TestFindingsCommands: an owner, with a token read from --token-file,
// lists her queue, previews a bulk review, marks her AIS finding false
// positive, is refused the TVM-only one (403 in the message, non-zero
// exit); the decision is recorded under her name.
func TestFindingsCommands(t *testing.T) {
	rs := newReviewServer(t)
	as := func(args ...string) (string, string, int) {
		return run(t, "", append(args, "--server", rs.url, "--token-file", rs.tokFile)...)
	}
	out, stderr, code := as("findings", "list", "--owner", "me", "--review", "untriaged", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d, %s", code, stderr)
	}
	var f api.Finding
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &f) != nil || f.ID != rs.aisID {
		t.Fatalf("owner queue = %q, want only finding %d", out, rs.aisID)
	}
	out, _, _ = as("findings", "list")
	if !strings.Contains(out, "title tvm") || !strings.Contains(out, "ann") {
		t.Fatalf("list table:\n%s", out)
	}

	out, stderr, code = as("findings", "review", "--filter", "review=untriaged&scope=repo", "--state", "confirmed", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: 1 findings") || !strings.Contains(out, "(1 selected outside") {
		t.Fatalf("dry run: exit %d, %q, %s", code, out, stderr)
	}
	if _, stderr, code := as("findings", "review", "--filter", "colour=red", "--state", "confirmed"); code == 0 || !strings.Contains(stderr, `unknown key "colour"`) {
		t.Fatalf("bad filter: exit %d, %s", code, stderr)
	}

	ais := strconv.FormatInt(rs.aisID, 10)
	out, stderr, code = as("findings", "review", ais, "--state", "false_positive", "--justification", "code_not_reachable", "--comment", "test fixture")
	if code != 0 || !strings.Contains(out, "false_positive recorded") {
		t.Fatalf("review: exit %d, %q, %s", code, out, stderr)
	}
	_, stderr, code = as("findings", "review", strconv.FormatInt(rs.tvmID, 10), "--state", "false_positive", "--justification", "code_not_reachable")
	if code == 0 || !strings.Contains(stderr, "403") {
		t.Fatalf("review of a TVM-only finding: exit %d, %s; want 403", code, stderr)
	}
	d, err := rs.st.GetReview(t.Context(), rs.aisID)
	if err != nil || d.State != "false_positive" {
		t.Fatalf("review = %+v, %v", d, err)
	}
	actors := storetest.Strings(t, rs.st, `SELECT DISTINCT actor FROM activity_log WHERE action = 'finding.reviewed'`)
	if len(actors) != 1 || actors[0] != "ann" {
		t.Fatalf("review activity actors = %q, want [ann]", actors)
	}

	// Without a token, or with a plain-http server elsewhere, nothing is sent.
	t.Setenv("STARPIPE_TOKEN", "")
	if _, stderr, code := run(t, "", "findings", "list", "--server", rs.url); code == 0 || !strings.Contains(stderr, "token") {
		t.Fatalf("no token: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, "", "findings", "list", "--server", "http://starpipe.example.com", "--token", rs.annTok); code == 0 || !strings.Contains(stderr, "plain http") {
		t.Fatalf("plain http: exit %d, %s", code, stderr)
	}
}

// TestExceptionsCommandsWithoutRegister: against a daemon without the
// exceptions routes, both commands fail saying so rather than with a bare
// 404.
func TestExceptionsCommands(t *testing.T) {
	rs := newReviewServer(t)
	as := func(args ...string) (string, string, int) {
		return run(t, "", append(args, "--server", rs.url, "--token", rs.admin)...)
	}
	expires := time.Now().AddDate(0, 3, 0).Format("2006-01-02")
	if _, stderr, code := as("exceptions", "create", "--finding", strconv.FormatInt(rs.aisID, 10), "--owner", "ann",
		"--rationale", "compensated by the WAF", "--expires", expires, "--review-every", "P90D"); code != 0 {
		t.Fatalf("create: exit %d, %s", code, stderr)
	}
	stdout, stderr, code := as("exceptions", "list")
	if code != 0 || !strings.Contains(stdout, "compensated by the WAF") && !strings.Contains(stdout, "ann") {
		t.Fatalf("list: exit %d, %s%s", code, stdout, stderr)
	}
	if _, stderr, code := as("exceptions", "create", "--finding", "1", "--owner", "ann", "--rationale", "x", "--expires", "soon"); code == 0 || !strings.Contains(stderr, "--expires") {
		t.Fatalf("bad expiry: exit %d, %s", code, stderr)
	}
}
