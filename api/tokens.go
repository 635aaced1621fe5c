package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/starpipe/starpipe/store"
)

// API tokens: admins create them (the token is answered once, only its
// hash is stored), list them without secrets and revoke them. Every change
// is in the activity log with the admin's token name as actor.

func init() { routeGroups = append(routeGroups, (*Server).registerTokens) }

// maxTokenBody bounds a token request: a hundred long scope patterns fit.
const maxTokenBody = 256 << 10

func (s *Server) registerTokens() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/tokens", s.createToken)
	// Auditors see who may do what, as they see credentials' metadata.
	s.Handle("GET /v1/tokens", s.listTokens, RoleAuditor)
	s.Handle("DELETE /v1/tokens/{name}", s.revokeToken)
}

// tokenRequest is the body of POST /v1/tokens.
type tokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// User makes a token that acts as this user: the user's role (give
	// none, or the same) and ownership scopes, and the user's name as the
	// actor of every change made with it.
	User string `json:"user"`
	// Scopes are scope patterns the token may upload ('*' within a
	// '/'-separated segment, '**' across them, '?' one character);
	// Kinds the scan kinds. Empty or absent: no limit.
	Scopes []string `json:"scopes"`
	Kinds  []string `json:"kinds"`
}

// tokenView is a token as GET /v1/tokens shows it: never its secret, which
// is not stored.
// tokenCreated answers POST /v1/tokens: the only time the token is shown.
type tokenCreated struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	User   string   `json:"user,omitempty"`
	Scopes []string `json:"scopes"`
	Kinds  []string `json:"kinds"`
	Token  string   `json:"token"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTokenBody))
	dec.DisallowUnknownFields()
	var req tokenRequest
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", maxTokenBody))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return
	}
	spec := store.TokenSpec{Name: req.Name, Role: req.Role, User: req.User, Scopes: req.Scopes, Kinds: req.Kinds}
	tok, err := s.opt.Store.IssueToken(r.Context(), spec, p.Name)
	if err != nil {
		s.fail(w, r, err, fmt.Sprintf("token %q", req.Name))
		return
	}
	if req.User != "" {
		// The token has the user's role; read it back for the answer.
		if u, err := s.opt.Store.GetUser(r.Context(), req.User); err == nil {
			req.Role = u.Role
		}
	}
	// The token is a secret: no cache may keep this answer.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/v1/tokens")
	writeJSON(w, http.StatusCreated, tokenCreated{
		Name: req.Name, Role: req.Role, User: req.User, Scopes: sortedSet(req.Scopes), Kinds: sortedSet(req.Kinds), Token: tok,
	})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := s.opt.Store.ListTokens(r.Context())
	if err != nil {
		s.fail(w, r, err, "tokens")
		return
	}
	out := make([]Token, len(toks))
	for i, t := range toks {
		out[i] = TokenOf(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

// revokeToken answers 204; revoking a revoked token again is not an error.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	name := r.PathValue("name")
	if err := s.opt.Store.RevokeToken(r.Context(), name, p.Name); err != nil {
		s.fail(w, r, err, fmt.Sprintf("token %q", name))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sortedSet is a list as the store keeps it: sorted, without repeats,
// never null in JSON.
func sortedSet(l []string) []string {
	out := slices.Clone(l)
	slices.Sort(out)
	return nonNilSlice(slices.Compact(out))
}
