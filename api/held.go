package api

import (
	"context"
	"net/http"

	"github.com/starpipe/starpipe/ingest/pipeline"
)

// Held runs: reconciliation holds a run that would resolve too much of its
// scope at once (reconcile.hold_fraction and hold_min); an operator or
// admin then releases it (its resolutions apply, as reconciliation would
// have applied them, sparing findings that later runs saw) or discards it
// (status discarded, nothing resolved, its own observations kept). Both
// are in the activity log with the caller's token name and emit events on
// starpipe.finding.events.

func init() { routeGroups = append(routeGroups, (*Server).registerHeld) }

// HeldRuns decides held runs; *pipeline.HeldRuns implements it. A run that
// is not held is a *store.RunStateError (409); an unknown run
// store.ErrNotFound (404).
type HeldRuns interface {
	Release(ctx context.Context, runID, actor string) (pipeline.Decision, error)
	Discard(ctx context.Context, runID, actor string) (pipeline.Decision, error)
}

func (s *Server) registerHeld() {
	if s.opt.HeldRuns == nil || s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/runs/{id}/release", s.decideRun(HeldRuns.Release), RoleOperator)
	s.Handle("POST /v1/runs/{id}/discard", s.decideRun(HeldRuns.Discard), RoleOperator)
}

// runDecision answers a release or discard.
type runDecision struct {
	ID     string `json:"id"`
	Status string `json:"status"` // succeeded (released) or discarded
	// Resolved is how many findings the release resolved; WouldResolve and
	// Open are the counts recorded when the run was held.
	Resolved     int    `json:"resolved"`
	WouldResolve int    `json:"would_resolve"`
	Open         int    `json:"open"`
	DecidedBy    string `json:"decided_by"`
}

func (s *Server) decideRun(decide func(HeldRuns, context.Context, string, string) (pipeline.Decision, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		id := r.PathValue("id")
		if len(p.Scopes) > 0 || len(p.Kinds) > 0 {
			run, err := s.opt.Store.GetRun(r.Context(), id)
			if err != nil {
				s.fail(w, r, err, "run "+id)
				return
			}
			if msg := p.runRefusal(run.Scope, run.Kind); msg != "" {
				writeError(w, http.StatusForbidden, "forbidden", msg)
				return
			}
		}
		d, err := decide(s.opt.HeldRuns, r.Context(), id, p.Name)
		if err != nil {
			s.fail(w, r, err, "run "+id)
			return
		}
		writeJSON(w, http.StatusOK, runDecision{
			ID: d.RunID, Status: string(d.Status), Resolved: d.Resolved, WouldResolve: d.WouldResolve, Open: d.Open, DecidedBy: p.Name,
		})
	}
}
