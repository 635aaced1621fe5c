package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/store"
)

// Exceptions register routes: create (admins, and owners over findings of
// their controls), approve under four eyes, list and read. The rules are
// package review's.

func init() { routeGroups = append(routeGroups, (*Server).registerExceptions) }

func (s *Server) registerExceptions() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/exceptions", s.createException, RoleOwner)
	s.Handle("GET /v1/exceptions", s.listExceptions, RoleOperator, RoleOwner, RoleAuditor)
	s.Handle("GET /v1/exceptions/{id}", s.getException, RoleOperator, RoleOwner, RoleAuditor)
	s.Handle("POST /v1/exceptions/{id}/approve", s.approveException, RoleOwner)
}

func (s *Server) exceptionPolicy() review.ExceptionPolicy {
	if s.opt.Exceptions != nil {
		return *s.opt.Exceptions
	}
	return review.DefaultExceptionPolicy()
}

func (s *Server) exceptions() *review.Exceptions {
	return review.NewExceptions(s.opt.Store, s.exceptionPolicy(), nil, s.opt.Logger)
}

// exceptionRequest is the body of POST /v1/exceptions: the findings by ids
// or by a filter (the bulk review's), exactly one of the two.
type exceptionRequest struct {
	Findings             []int64     `json:"findings"`
	Filter               *bulkFilter `json:"filter"`
	Owner                string      `json:"owner"`
	Rationale            string      `json:"rationale"`
	CompensatingControls []string    `json:"compensating_controls"`
	Expires              time.Time   `json:"expires"`
	ReviewEvery          string      `json:"review_every"`
}

func (s *Server) createException(w http.ResponseWriter, r *http.Request) {
	var req exceptionRequest
	if !decodeBody(w, r, maxReviewBody, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	var f store.FindingFilter
	switch {
	case len(req.Findings) > 0 && req.Filter != nil:
		writeError(w, http.StatusBadRequest, "bad_request", `give "findings" (ids) or "filter", not both`)
		return
	case len(req.Findings) > 0:
		f.IDs = req.Findings
	case req.Filter != nil:
		var err error
		if f, err = s.bulkFindingFilter(p, *req.Filter); err != nil {
			writeParamError(w, err)
			return
		}
	default:
		writeError(w, http.StatusBadRequest, "bad_request", `"findings" (ids) or "filter" is required`)
		return
	}
	e, err := s.exceptions().Create(r.Context(), reviewActor(p), review.ExceptionRequest{
		Findings: f, Owner: req.Owner, Rationale: req.Rationale, CompensatingControls: req.CompensatingControls,
		Expires: req.Expires, ReviewEvery: req.ReviewEvery,
	})
	if err != nil {
		s.exceptionFailed(w, r, err, "exception")
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func exceptionID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "exception "+raw+" not found")
		return 0, false
	}
	return id, true
}

func (s *Server) approveException(w http.ResponseWriter, r *http.Request) {
	id, ok := exceptionID(w, r)
	if !ok {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	e, err := s.exceptions().Approve(r.Context(), reviewActor(p), id)
	if err != nil {
		s.exceptionFailed(w, r, err, "exception "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) getException(w http.ResponseWriter, r *http.Request) {
	id, ok := exceptionID(w, r)
	if !ok {
		return
	}
	e, err := s.opt.Store.GetException(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, "exception "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// listExceptions lists the register, newest first; ?due=review lists the
// live exceptions whose review is due or that expire within ?within= days
// (default review.expiry_warning), expiring first.
func (s *Server) listExceptions(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "due", "within")
	if err != nil {
		writeParamError(w, err)
		return
	}
	f := store.ExceptionFilter{Now: time.Now(), Within: s.exceptionPolicy().ExpiryWarning}
	switch due := q.one("due"); due {
	case "":
	case "review":
		f.Due = true
	default:
		writeParamError(w, &queryParamError{fmt.Sprintf("invalid due %q (allowed: review)", due)})
		return
	}
	if v := q.one("within"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3650 {
			writeParamError(w, &queryParamError{fmt.Sprintf("invalid within %q (want days, 0 to 3650)", v)})
			return
		}
		f.Within = time.Duration(n) * 24 * time.Hour
	}
	es, err := s.opt.Store.ListExceptions(r.Context(), f)
	if err != nil {
		s.fail(w, r, err, "exceptions")
		return
	}
	if es == nil {
		es = []store.Exception{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": es})
}

// exceptionFailed answers the register's errors and hands the rest to the
// review errors' mapper.
func (s *Server) exceptionFailed(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, review.ErrTooLong):
		writeError(w, http.StatusUnprocessableEntity, "invalid_expiry", err.Error())
	case errors.Is(err, store.ErrConflict) && !errors.Is(err, review.ErrForbidden):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		s.reviewFailed(w, r, err, what)
	}
}
