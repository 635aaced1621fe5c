package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/store"
)

// Review routes: a decision on one finding, a bulk decision by filter with
// a preview count, and the SLA policy's history. Who may decide is the
// review package's rule (admins anywhere, owners on findings of their
// controls); the routes let admins and owners in.

func init() { routeGroups = append(routeGroups, (*Server).registerReview) }

func (s *Server) registerReview() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/findings/{id}/review", s.reviewFinding, RoleOwner)
	s.Handle("POST /v1/findings/review", s.reviewFindings, RoleOwner)
	s.Handle("GET /v1/sla/policies", s.listSLAPolicies, RoleOperator, RoleOwner, RoleAuditor)
}

// maxReviewBody bounds a review request: a comment of at most 10 000 bytes
// and a filter.
const maxReviewBody = 64 << 10

func (s *Server) reviewService() *review.Service {
	return review.NewService(s.opt.Store, nil, s.opt.Logger)
}

// reviewActor is the review package's view of the caller.
func reviewActor(p Principal) review.Actor {
	return review.Actor{Name: p.Name, Role: p.Role, User: p.User}
}

// reviewRequest is the body of POST /v1/findings/{id}/review.
type reviewRequest struct {
	State         string `json:"state"`
	Justification string `json:"justification"`
	Comment       string `json:"comment"`
}

// reviewView is a finding's decision as the API shows it.
type reviewView struct {
	FindingID int64        `json:"finding_id"`
	Review    store.Review `json:"review"`
	Changed   bool         `json:"changed"` // false when the decision was already exactly this
}

func (s *Server) reviewFinding(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "finding "+raw+" not found")
		return
	}
	var req reviewRequest
	if !decodeBody(w, r, maxReviewBody, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	res, err := s.reviewService().Review(r.Context(), reviewActor(p), id, review.Decision{State: req.State, Justification: req.Justification, Comment: req.Comment})
	if err != nil {
		s.reviewFailed(w, r, err, "finding "+raw)
		return
	}
	cur, err := s.opt.Store.GetReview(r.Context(), id)
	if err != nil {
		s.reviewFailed(w, r, err, "finding "+raw)
		return
	}
	writeJSON(w, http.StatusOK, reviewView{FindingID: id, Review: cur, Changed: len(res.Changed) > 0})
}

// bulkFilter is the filter of a bulk review: the findings list's filters.
type bulkFilter struct {
	Scope    string   `json:"scope"`
	Status   []string `json:"status"`
	Severity []string `json:"severity"`
	Control  string   `json:"control"`
	Version  string   `json:"version"`
	Kind     string   `json:"kind"`
	Tool     string   `json:"tool"`
	Review   []string `json:"review"`
	Owner    string   `json:"owner"` // a user name, or "me"
	IDs      []int64  `json:"ids"`
}

// bulkReviewRequest is the body of POST /v1/findings/review.
type bulkReviewRequest struct {
	Filter        *bulkFilter `json:"filter"`
	State         string      `json:"state"`
	Justification string      `json:"justification"`
	Comment       string      `json:"comment"`
	DryRun        bool        `json:"dry_run"`
	// Expect is the count a preview showed; when given, the review is
	// refused with 409 if the selection no longer has that many findings.
	Expect *int `json:"expect"`
}

func (s *Server) reviewFindings(w http.ResponseWriter, r *http.Request) {
	var req bulkReviewRequest
	if !decodeBody(w, r, maxReviewBody, &req) {
		return
	}
	if req.Filter == nil {
		// An absent filter would select every finding: say so explicitly.
		writeError(w, http.StatusBadRequest, "bad_request", `"filter" is required (use {} to select every finding)`)
		return
	}
	p, _ := PrincipalFrom(r.Context())
	f, err := s.bulkFindingFilter(p, *req.Filter)
	if err != nil {
		writeParamError(w, err)
		return
	}
	expect := -1
	if req.Expect != nil {
		expect = *req.Expect
	}
	res, err := s.reviewService().Bulk(r.Context(), reviewActor(p), review.BulkRequest{
		Filter: f, DryRun: req.DryRun, Expect: expect,
		Decision: review.Decision{State: req.State, Justification: req.Justification, Comment: req.Comment},
	})
	if err != nil {
		s.reviewFailed(w, r, err, "findings")
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// bulkFindingFilter validates a bulk filter as the findings list does its
// query parameters.
func (s *Server) bulkFindingFilter(p Principal, b bulkFilter) (store.FindingFilter, error) {
	v := map[string][]string{}
	add := func(k string, vals ...string) {
		for _, x := range vals {
			if x != "" {
				v[k] = append(v[k], x)
			}
		}
	}
	add("scope", b.Scope)
	add("status", b.Status...)
	add("severity", b.Severity...)
	add("control", b.Control)
	add("version", b.Version)
	add("kind", b.Kind)
	add("tool", b.Tool)
	q := queryParams{v}
	f, err := s.findingFilter(q)
	if err != nil {
		return f, err
	}
	f.Limit = 0
	f.IDs = b.IDs
	for _, st := range b.Review {
		if !store.ValidReviewState(st) {
			return f, &queryParamError{fmt.Sprintf("invalid review %q (allowed: %s)", st, strings.Join(store.ReviewStates(), ", "))}
		}
		f.Review = appendIfMissing(f.Review, st)
	}
	if f.Owner, err = ownerParam(p, b.Owner); err != nil {
		return f, err
	}
	return f, nil
}

// ownerParam resolves owner=me to the caller's user.
func ownerParam(p Principal, v string) (string, error) {
	if v != "me" {
		return v, nil
	}
	if p.User == "" {
		return "", &queryParamError{"owner=me needs a token that belongs to a user (POST /v1/users/{name}/tokens)"}
	}
	return p.User, nil
}

// reviewListFilter adds the review parameters of GET /v1/findings (review,
// owner, sort) to f. An owner's queue (owner given) is sorted by SLA, oldest
// first, unless sort says otherwise.
func reviewListFilter(r *http.Request, q queryParams, f *store.FindingFilter) error {
	for _, st := range q.list("review") {
		if !store.ValidReviewState(st) {
			return &queryParamError{fmt.Sprintf("invalid review %q (allowed: %s)", st, strings.Join(store.ReviewStates(), ", "))}
		}
		f.Review = appendIfMissing(f.Review, st)
	}
	p, _ := PrincipalFrom(r.Context())
	var err error
	if f.Owner, err = ownerParam(p, q.one("owner")); err != nil {
		return err
	}
	switch sort := q.one("sort"); sort {
	case "":
		if f.Owner != "" {
			f.Sort = store.SortSLA
		}
	case "id":
	case store.SortSLA:
		f.Sort = store.SortSLA
	default:
		return &queryParamError{fmt.Sprintf("invalid sort %q (allowed: id, sla)", sort)}
	}
	return nil
}

// slaPolicyView is one version of the SLA policy: days per severity, null
// where a severity has no SLA.
type slaPolicyView struct {
	Version       int64           `json:"version"`
	Days          map[string]*int `json:"days"`
	EffectiveFrom time.Time       `json:"effective_from"`
	RecordedBy    string          `json:"recorded_by"`
}

func viewOfSLAPolicy(p store.SLAPolicy) slaPolicyView {
	days := func(d time.Duration) *int {
		if d <= 0 {
			return nil
		}
		n := int(d / (24 * time.Hour))
		return &n
	}
	return slaPolicyView{Version: p.Version, EffectiveFrom: p.EffectiveFrom, RecordedBy: p.RecordedBy, Days: map[string]*int{
		"critical": days(p.SLA.Critical), "high": days(p.SLA.High), "medium": days(p.SLA.Medium),
		"low": days(p.SLA.Low), "info": days(p.SLA.Info),
	}}
}

// listSLAPolicies lists every version of the SLA policy, or with ?at= the
// one in force at that time.
func (s *Server) listSLAPolicies(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "at")
	if err != nil {
		writeParamError(w, err)
		return
	}
	if at := q.one("at"); at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			writeParamError(w, &queryParamError{fmt.Sprintf("invalid at %q (want an RFC 3339 time)", at)})
			return
		}
		p, err := s.opt.Store.SLAPolicyAt(r.Context(), t)
		if err != nil {
			s.fail(w, r, err, "SLA policy at "+at)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": []slaPolicyView{viewOfSLAPolicy(p)}})
		return
	}
	ps, err := s.opt.Store.SLAPolicies(r.Context())
	if err != nil {
		s.fail(w, r, err, "SLA policies")
		return
	}
	items := make([]slaPolicyView, len(ps))
	for i, p := range ps {
		items[i] = viewOfSLAPolicy(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// reviewFailed answers the review and user errors, and hands the rest to
// the one error mapper.
func (s *Server) reviewFailed(w http.ResponseWriter, r *http.Request, err error, what string) {
	var de *review.DecisionError
	var ue *store.UserError
	switch {
	case errors.Is(err, review.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.As(err, &de):
		writeError(w, http.StatusBadRequest, "invalid_field", de.Error())
	case errors.As(err, &ue):
		writeError(w, http.StatusBadRequest, "invalid_field", ue.Error())
	case errors.Is(err, review.ErrTooMany):
		writeError(w, http.StatusUnprocessableEntity, "too_many", err.Error())
	case errors.Is(err, review.ErrStale):
		writeError(w, http.StatusConflict, "stale", err.Error())
	default:
		s.fail(w, r, err, what)
	}
}

// decodeBody reads exactly one JSON object of at most limit bytes into v,
// refusing unknown fields; it answers the client itself when it returns
// false.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", limit))
	case errors.As(err, &syntax):
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("request body is not valid JSON (near byte %d)", syntax.Offset))
	case errors.As(err, &typ):
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("field %q has the wrong JSON type (%s)", typ.Field, typ.Value))
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
}
