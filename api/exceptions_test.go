package api

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/starpipe/starpipe/store"
)

// An AIS owner may put AIS findings under an exception (they become
// risk_accepted), not a TVM-only finding (403), and not beyond the
// configured maximum (422); the register lists and shows it.
func TestExceptionsRoutes(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	alice := e.user(map[string]any{"name": "alice", "email": "alice@example.com", "role": "owner", "domains": []string{"ais"}})
	auditor, err := e.st.CreateToken(t.Context(), "test-auditor", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	body := func(fp string, expires time.Time) map[string]any {
		return map[string]any{"findings": []int64{e.ids[fp]}, "owner": "alice", "rationale": "vendor fix in Q3",
			"compensating_controls": []string{"AIS-07"}, "expires": expires, "review_every": "P90D"}
	}
	now := time.Now()

	code, b := e.call(alice, http.MethodPost, "/v1/exceptions", body("tvm", now.Add(30*24*time.Hour)))
	if code != http.StatusForbidden {
		t.Fatalf("owner over a TVM-only finding: %d %s", code, b)
	}
	code, b = e.call(alice, http.MethodPost, "/v1/exceptions", body("ais", now.Add(366*24*time.Hour)))
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("beyond review.max_exception: %d %s", code, b)
	}
	code, b = e.call(alice, http.MethodPost, "/v1/exceptions", map[string]any{"owner": "alice", "rationale": "r", "expires": now.Add(time.Hour)})
	if code != http.StatusBadRequest {
		t.Fatalf("no findings: %d %s", code, b)
	}
	if r := e.decision("ais"); r.State != store.ReviewUntriaged {
		t.Fatalf("refused requests changed the finding: %+v", r)
	}

	var ex store.Exception
	e.must(alice, http.MethodPost, "/v1/exceptions", body("ais", now.Add(30*24*time.Hour)), http.StatusCreated, &ex)
	if ex.State != store.ExceptionActive || ex.CreatedBy != "alice" || len(ex.Findings) != 1 || ex.Findings[0] != e.ids["ais"] {
		t.Fatalf("created: %+v", ex)
	}
	if r := e.decision("ais"); r.State != store.ReviewRiskAccepted || r.Exception != ex.ID {
		t.Fatalf("ais after the exception: %+v", r)
	}

	path := "/v1/exceptions/" + strconv.FormatInt(ex.ID, 10)
	var got store.Exception
	e.must(auditor, http.MethodGet, path, nil, http.StatusOK, &got)
	if got.ID != ex.ID || got.Rationale != "vendor fix in Q3" {
		t.Fatalf("get: %+v", got)
	}
	e.must(auditor, http.MethodGet, "/v1/exceptions/999999", nil, http.StatusNotFound, nil)
	var list struct{ Items []store.Exception }
	e.must(auditor, http.MethodGet, "/v1/exceptions", nil, http.StatusOK, &list)
	if len(list.Items) != 1 {
		t.Fatalf("list: %+v", list)
	}
	// Expiring in 30 days: not within the default 14-day warning, but
	// within 31.
	e.must(auditor, http.MethodGet, "/v1/exceptions?due=review", nil, http.StatusOK, &list)
	if len(list.Items) != 0 {
		t.Fatalf("due=review: %+v", list)
	}
	e.must(auditor, http.MethodGet, "/v1/exceptions?due=review&within=31", nil, http.StatusOK, &list)
	if len(list.Items) != 1 {
		t.Fatalf("due=review&within=31: %+v", list)
	}
	e.must(auditor, http.MethodGet, "/v1/exceptions?due=soon", nil, http.StatusBadRequest, nil)
	// Not pending: approving is a conflict.
	e.must(e.admin, http.MethodPost, path+"/approve", nil, http.StatusConflict, nil)
}

// Under four eyes the creator cannot approve; another person can.
func TestExceptionsFourEyesRoute(t *testing.T) {
	t.Parallel()
	e := newReviewEnv(t)
	pol := e.srv.exceptionPolicy()
	pol.FourEyes = true
	e.srv.opt.Exceptions = &pol
	alice := e.user(map[string]any{"name": "alice", "email": "alice@example.com", "role": "owner", "domains": []string{"ais"}})
	bob := e.user(map[string]any{"name": "bob", "email": "bob@example.com", "role": "owner", "domains": []string{"ais"}})
	var ex store.Exception
	e.must(alice, http.MethodPost, "/v1/exceptions", map[string]any{"filter": map[string]any{"owner": "me"}, "owner": "alice",
		"rationale": "r", "expires": time.Now().Add(24 * time.Hour)}, http.StatusCreated, &ex)
	if ex.State != store.ExceptionPending || len(ex.Findings) != 1 || ex.Findings[0] != e.ids["ais"] {
		t.Fatalf("created: %+v", ex)
	}
	if r := e.decision("ais"); r.State != store.ReviewUntriaged {
		t.Fatalf("pending applied: %+v", r)
	}
	path := "/v1/exceptions/" + strconv.FormatInt(ex.ID, 10) + "/approve"
	e.must(alice, http.MethodPost, path, nil, http.StatusForbidden, nil)
	e.must(bob, http.MethodPost, path, nil, http.StatusOK, &ex)
	if ex.State != store.ExceptionActive || ex.ApprovedBy != "bob" {
		t.Fatalf("approved: %+v", ex)
	}
	if r := e.decision("ais"); r.State != store.ReviewRiskAccepted {
		t.Fatalf("after approval: %+v", r)
	}
}

func (e *reviewEnv) decision(fp string) store.Review {
	e.t.Helper()
	r, err := e.st.GetReview(e.t.Context(), e.ids[fp])
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}
