package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// reviewEnv is a server over a real database with three findings whose
// control links are set by hand, so that ownership is exact:
//
//	ais:   4.0.13 AIS-07 and TVM-07, 4.1 AIS-07 and TVM-03
//	tvm:   4.0.13 TVM-07 only (a v4.1 TVM-03 owner owns it through the title crosswalk)
//	other: 4.0.13 IVS-03 only
type reviewEnv struct {
	t     *testing.T
	st    *store.Store
	srv   *Server
	admin string
	ids   map[string]int64
}

func newReviewEnv(t *testing.T) *reviewEnv {
	t.Helper()
	st, _ := storetest.New(t)
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	e := &reviewEnv{t: t, st: st, ids: map[string]int64{}}
	e.srv = New(Options{Auth: storeAuthenticator{st}, Store: st, Catalogs: cats, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if e.admin, err = st.CreateToken(t.Context(), "test-admin", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	e.scan(time.Now().Add(-time.Hour), "ais", "tvm", "other")
	return e
}

func reviewFinding(fp string) finding.Finding {
	links := map[string][]finding.ControlLink{
		"ais":   {{Version: "4.0.13", Control: "AIS-07"}, {Version: "4.0.13", Control: "TVM-07"}, {Version: "4.1", Control: "AIS-07"}, {Version: "4.1", Control: "TVM-03"}},
		"tvm":   {{Version: "4.0.13", Control: "TVM-07"}},
		"other": {{Version: "4.0.13", Control: "IVS-03"}},
	}[fp]
	for i := range links {
		links[i].Rule, links[i].Reason = "test", "set by the test"
	}
	return finding.Finding{Fingerprint: fp, Scope: "repo", Kind: finding.KindCode, Tool: "semgrep", RuleID: "rule-" + fp,
		Title: "title " + fp, Severity: finding.SeverityHigh, Controls: links,
		Location: finding.Location{Kind: finding.LocationFile, URI: "src/" + fp + ".go", StartLine: 1}}
}

// scan stores a complete, successful code run of scope repo that saw the
// given findings, and reconciles it: findings it did not see are resolved,
// resolved ones it saw are reopened.
func (e *reviewEnv) scan(at time.Time, fps ...string) string {
	t := e.t
	t.Helper()
	var runID string
	if err := storetest.SQL(t, e.st).QueryRow(t.Context(), `
		INSERT INTO scan_runs (kind, scope, tool, format, status, created_at, stats)
		VALUES ('code', 'repo', 'semgrep', 'sarif', 'processing', $1, '{"tools":["semgrep"]}') RETURNING id::text`, at).Scan(&runID); err != nil {
		t.Fatal(err)
	}
	var fs []finding.Finding
	for _, fp := range fps {
		fs = append(fs, reviewFinding(fp))
	}
	err := e.st.InTx(t.Context(), func(tx *store.Tx) error {
		sla := store.DefaultSLA()
		res, err := store.UpsertFindings(t.Context(), tx, runID, fs, at, &sla)
		if err != nil {
			return err
		}
		for _, r := range res {
			e.ids[r.Fingerprint] = r.ID
		}
		_, err = store.Reconcile(t.Context(), tx, runID, sla, store.DefaultHoldPolicy())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return runID
}

func (e *reviewEnv) call(token, method, target string, body any) (int, []byte) {
	e.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequestWithContext(e.t.Context(), method, target, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// must calls and checks the status, decoding the answer into v.
func (e *reviewEnv) must(token, method, target string, body any, want int, v any) {
	e.t.Helper()
	code, b := e.call(token, method, target, body)
	if code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, target, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, target, b, err)
		}
	}
}

// user creates a user and a token acting as them.
func (e *reviewEnv) user(body map[string]any) string {
	e.t.Helper()
	e.must(e.admin, http.MethodPost, "/v1/users", body, http.StatusCreated, nil)
	var tok struct{ Token string }
	name := body["name"].(string)
	e.must(e.admin, http.MethodPost, "/v1/users/"+name+"/tokens", map[string]string{"name": name + "-token"}, http.StatusCreated, &tok)
	return tok.Token
}

func (e *reviewEnv) reviewPath(fp string) string {
	return "/v1/findings/" + strconv.FormatInt(e.ids[fp], 10) + "/review"
}

func (e *reviewEnv) finding(token, fp string) store.FindingDetail {
	e.t.Helper()
	var d store.FindingDetail
	e.must(token, http.MethodGet, "/v1/findings/"+strconv.FormatInt(e.ids[fp], 10), nil, http.StatusOK, &d)
	return d
}

func (e *reviewEnv) queue(token, query string) []string {
	e.t.Helper()
	var l findingList
	e.must(token, http.MethodGet, "/v1/findings?"+query, nil, http.StatusOK, &l)
	var out []string
	for _, it := range l.Items {
		out = append(out, it.Fingerprint)
	}
	return out
}

func TestOwnerMayReviewOnlyTheirControls(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "email": "alice@example.com", "role": "owner", "domains": []string{"ais"}})
	// A service token with role owner belongs to nobody, so owns nothing.
	svc, err := e.st.CreateToken(t.Context(), "owner-service", RoleOwner)
	if err != nil {
		t.Fatal(err)
	}
	fp := map[string]any{"state": "false_positive", "justification": "vulnerable_code_not_in_execute_path", "comment": "test helper only"}

	tests := []struct {
		name  string
		token string
		fp    string
		body  any
		want  int
	}{
		{"owner outside their domain", alice, "tvm", fp, http.StatusForbidden},
		{"owner outside their domain, IVS", alice, "other", fp, http.StatusForbidden},
		{"owner token of no user", svc, "ais", fp, http.StatusForbidden},
		{"unknown justification", alice, "ais", map[string]any{"state": "false_positive", "justification": "looks fine"}, http.StatusBadRequest},
		{"false positive without a reason", alice, "ais", map[string]any{"state": "false_positive"}, http.StatusBadRequest},
		{"accepted risk without a rationale", alice, "ais", map[string]any{"state": "risk_accepted"}, http.StatusBadRequest},
		{"unknown state", alice, "ais", map[string]any{"state": "wontfix"}, http.StatusBadRequest},
		{"unknown field", alice, "ais", map[string]any{"state": "confirmed", "owner": "x"}, http.StatusBadRequest},
		{"owner in their domain", alice, "ais", fp, http.StatusOK},
	}
	for _, tc := range tests {
		code, b := e.call(tc.token, http.MethodPost, e.reviewPath(tc.fp), tc.body)
		if code != tc.want {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, code, tc.want, b)
		}
	}

	// An owner reads everything.
	if d := e.finding(alice, "tvm"); d.Review != store.ReviewUntriaged || len(d.Owners) != 0 {
		t.Fatalf("tvm: review %q owners %v", d.Review, d.Owners)
	}
	d := e.finding(alice, "ais")
	if d.Review != store.ReviewFalsePositive || !slices.Equal(d.Owners, []string{"alice"}) {
		t.Fatalf("ais: review %q owners %v", d.Review, d.Owners)
	}
	var rv reviewView
	e.must(alice, http.MethodPost, e.reviewPath("ais"), fp, http.StatusOK, &rv)
	if rv.Changed || rv.Review.Justification != "code_not_reachable" || rv.Review.DecidedBy != "alice" {
		t.Fatalf("repeated decision: %+v", rv)
	}

	// The decision is one activity row and one event, with the user as
	// the actor.
	id := strconv.FormatInt(e.ids["ais"], 10)
	acts := storetest.Strings(t, e.st, `SELECT actor || ' ' || action || ' ' || (before->>'review') || '>' || (after->>'review')
		FROM activity_log WHERE subject_type = 'finding' AND subject_id = $1 AND action = 'finding.reviewed'`, id)
	if !slices.Equal(acts, []string{"alice finding.reviewed untriaged>false_positive"}) {
		t.Fatalf("activity: %q", acts)
	}
	payloads := storetest.Strings(t, e.st, `SELECT convert_from(payload, 'UTF8') FROM outbox WHERE topic = $1 AND key = $2`, bus.TopicFindingEvents, id)
	var events []string
	for _, p := range payloads {
		env, err := bus.Decode([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if env.Type != bus.TypeReviewed {
			continue
		}
		var ev struct{ From, To, Actor, Justification string }
		if err := env.Unmarshal(&ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev.Actor+" "+ev.From+">"+ev.To+" "+ev.Justification)
	}
	if !slices.Equal(events, []string{"alice untriaged>false_positive code_not_reachable"}) {
		t.Fatalf("events: %q", events)
	}

	// A v4.1 control owner owns the v4.0.13 control of the same title.
	var own struct{ Ownership []store.Ownership }
	bob := e.user(map[string]any{"name": "bob", "role": "owner"})
	e.must(e.admin, http.MethodPut, "/v1/ownership", map[string]any{"owner": "bob", "controls": []string{"4.1/tvm-03"}}, http.StatusOK, &own)
	if !slices.ContainsFunc(own.Ownership, func(o store.Ownership) bool {
		return o.Version == "4.0.13" && o.Control == "TVM-07" && o.Via == "4.1/TVM-03"
	}) {
		t.Fatalf("ownership of bob: %+v", own.Ownership)
	}
	e.must(bob, http.MethodPost, e.reviewPath("tvm"), map[string]any{"state": "confirmed"}, http.StatusOK, nil)
	e.must(bob, http.MethodPost, e.reviewPath("other"), map[string]any{"state": "confirmed"}, http.StatusForbidden, nil)
	// Only admins assign ownership, and only to owners.
	e.must(bob, http.MethodPut, "/v1/ownership", map[string]any{"owner": "bob", "domains": []string{"IVS"}}, http.StatusForbidden, nil)
	e.must(e.admin, http.MethodPut, "/v1/ownership", map[string]any{"owner": "bob", "domains": []string{"XYZ"}}, http.StatusBadRequest, nil)

	// A disabled user's tokens stop working.
	e.must(e.admin, http.MethodPost, "/v1/users/bob/disable", nil, http.StatusOK, nil)
	e.must(bob, http.MethodGet, "/v1/findings", nil, http.StatusUnauthorized, nil)
}

func TestRescanKeepsReviewDecisions(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "role": "owner", "domains": []string{"AIS", "TVM"}})
	if got := e.queue(alice, "review=untriaged&owner=me"); !slices.Equal(got, []string{"ais", "tvm"}) {
		t.Fatalf("queue before: %v", got)
	}
	e.must(alice, http.MethodPost, e.reviewPath("ais"), map[string]any{"state": "false_positive", "comment": "test fixture"}, http.StatusOK, nil)
	e.must(alice, http.MethodPost, e.reviewPath("tvm"), map[string]any{"state": "risk_accepted", "comment": "compensated by the WAF"}, http.StatusOK, nil)

	// A rescan that no longer sees them resolves them; one that sees them
	// again reopens them. Their decisions stay, and neither comes back to
	// the queue.
	now := time.Now()
	e.scan(now.Add(-30*time.Minute), "other")
	if d := e.finding(alice, "tvm"); d.Status != "resolved" || d.Review != store.ReviewRiskAccepted {
		t.Fatalf("after the rescan that missed it: status %s review %s", d.Status, d.Review)
	}
	e.scan(now.Add(-20*time.Minute), "ais", "tvm", "other")
	for fp, want := range map[string]string{"ais": store.ReviewFalsePositive, "tvm": store.ReviewRiskAccepted} {
		d := e.finding(alice, fp)
		if d.Status != "reopened" || d.Review != want {
			t.Fatalf("%s after the rescan that saw it again: status %s review %s, want reopened %s", fp, d.Status, d.Review, want)
		}
	}
	if got := e.queue(alice, "review=untriaged&owner=me"); len(got) != 0 {
		t.Fatalf("queue after rescans: %v", got)
	}
	// The decisions are keyed by identity: no finding row was replaced.
	if got := e.queue(alice, "review=false_positive,risk_accepted"); !slices.Equal(got, []string{"ais", "tvm"}) {
		t.Fatalf("reviewed findings: %v", got)
	}
}

func TestOwnerQueueOldestSLAFirst(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "role": "owner", "domains": []string{"TVM", "IVS"}})
	// Due dates out of id order: other first, then tvm, then ais.
	for fp, days := range map[string]int{"other": 1, "tvm": 2, "ais": 3} {
		if _, err := storetest.SQL(t, e.st).Exec(t.Context(), `UPDATE findings SET sla_due = now() + make_interval(days => $2) WHERE id = $1`, e.ids[fp], days); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.queue(alice, "review=untriaged&owner=me"); !slices.Equal(got, []string{"other", "tvm", "ais"}) {
		t.Fatalf("queue: %v", got)
	}
	// Paging keeps the order.
	var got []string
	cursor := ""
	for {
		var l findingList
		e.must(alice, http.MethodGet, "/v1/findings?owner=me&limit=1"+cursor, nil, http.StatusOK, &l)
		for _, it := range l.Items {
			got = append(got, it.Fingerprint)
		}
		if l.Next == nil {
			break
		}
		cursor = "&cursor=" + *l.Next
	}
	if !slices.Equal(got, []string{"other", "tvm", "ais"}) {
		t.Fatalf("paged queue: %v", got)
	}
	// owner=me needs a user behind the token.
	e.must(e.admin, http.MethodGet, "/v1/findings?owner=me", nil, http.StatusBadRequest, nil)
	e.must(alice, http.MethodGet, "/v1/findings?review=maybe", nil, http.StatusBadRequest, nil)
}

func TestBulkReviewPreviewThenApply(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "role": "owner", "domains": []string{"AIS"}})
	confirm := func(extra map[string]any) map[string]any {
		b := map[string]any{"filter": map[string]any{"review": []string{"untriaged"}}, "state": "confirmed"}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	var res struct {
		Matched, OutOfScope, Changed int
		DryRun                       bool
	}
	decode := func(b []byte) {
		t.Helper()
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		res.Matched, res.OutOfScope, res.Changed = int(raw["matched"].(float64)), int(raw["out_of_scope"].(float64)), int(raw["changed"].(float64))
		res.DryRun = raw["dry_run"].(bool)
	}
	call := func(token string, body map[string]any, want int) {
		t.Helper()
		code, b := e.call(token, http.MethodPost, "/v1/findings/review", body)
		if code != want {
			t.Fatalf("bulk %v: status %d, want %d: %s", body, code, want, b)
		}
		if code == http.StatusOK {
			decode(b)
		}
	}

	// An owner's bulk review covers their findings only.
	call(alice, confirm(map[string]any{"dry_run": true}), http.StatusOK)
	if res.Matched != 1 || res.OutOfScope != 2 || res.Changed != 0 || !res.DryRun {
		t.Fatalf("owner preview: %+v", res)
	}

	call(e.admin, confirm(map[string]any{"dry_run": true}), http.StatusOK)
	if res.Matched != 3 || res.Changed != 0 {
		t.Fatalf("admin preview: %+v", res)
	}
	if n := storetest.Strings(t, e.st, `SELECT count(*)::text FROM finding_reviews`); n[0] != "0" {
		t.Fatalf("a dry run wrote %s decisions", n[0])
	}
	// The selection changed since the preview: refused.
	call(e.admin, confirm(map[string]any{"expect": 2}), http.StatusConflict)
	call(e.admin, confirm(map[string]any{"expect": 3}), http.StatusOK)
	if res.Matched != 3 || res.Changed != 3 || res.DryRun {
		t.Fatalf("apply: %+v", res)
	}
	// Nothing untriaged is left: a second run changes nothing.
	call(e.admin, confirm(nil), http.StatusOK)
	if res.Matched != 0 || res.Changed != 0 {
		t.Fatalf("second apply: %+v", res)
	}
	if got := storetest.Strings(t, e.st, `SELECT count(*)::text FROM activity_log WHERE action = 'finding.reviewed' AND actor = 'test-admin'`); got[0] != "3" {
		t.Fatalf("activity rows: %s", got[0])
	}
	call(e.admin, map[string]any{"state": "confirmed"}, http.StatusBadRequest) // no filter
	call(e.admin, map[string]any{"filter": map[string]any{"severity": []string{"urgent"}}, "state": "confirmed"}, http.StatusBadRequest)

	// Auditors and operators may not decide.
	aud, err := e.st.CreateToken(t.Context(), "auditor", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	call(aud, confirm(nil), http.StatusForbidden)
}

func TestUsersAdminOnly(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	op, err := e.st.CreateToken(t.Context(), "op", RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	e.must(op, http.MethodPost, "/v1/users", map[string]any{"name": "x", "role": "auditor"}, http.StatusForbidden, nil)
	e.must(op, http.MethodGet, "/v1/users", nil, http.StatusForbidden, nil)
	e.must(e.admin, http.MethodPost, "/v1/users", map[string]any{"name": "Bad Name", "role": "auditor"}, http.StatusBadRequest, nil)
	e.must(e.admin, http.MethodPost, "/v1/users", map[string]any{"name": "carol", "role": "auditor", "domains": []string{"AIS"}}, http.StatusBadRequest, nil)
	e.must(e.admin, http.MethodPost, "/v1/users", map[string]any{"name": "carol", "role": "auditor", "email": "carol@example.com"}, http.StatusCreated, nil)
	e.must(e.admin, http.MethodPost, "/v1/users", map[string]any{"name": "carol", "role": "auditor"}, http.StatusConflict, nil)
	e.must(e.admin, http.MethodPost, "/v1/users/nobody/tokens", map[string]any{"name": "t"}, http.StatusNotFound, nil)
	var list struct{ Items []store.User }
	e.must(e.admin, http.MethodGet, "/v1/users", nil, http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "carol" || list.Items[0].CreatedBy != "test-admin" {
		t.Fatalf("users: %+v", list.Items)
	}
	// The user's token acts as the user, with the user's role.
	var tok struct{ Token string }
	e.must(e.admin, http.MethodPost, "/v1/users/carol/tokens", map[string]any{"name": "carol-ci"}, http.StatusCreated, &tok)
	p, err := e.st.Authenticate(t.Context(), tok.Token)
	if err != nil || p.User != "carol" || p.Role != RoleAuditor || p.Actor() != "carol" {
		t.Fatalf("principal %+v, %v", p, err)
	}
}
