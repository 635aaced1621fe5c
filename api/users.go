package api

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/store"
)

// People: named users managed by admins, tokens that act as a user, and
// the assignment of owners to CCM domains and controls.

func init() { routeGroups = append(routeGroups, (*Server).registerUsers) }

func (s *Server) registerUsers() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/users", s.createUser)
	s.Handle("GET /v1/users", s.listUsers, RoleAuditor)
	s.Handle("GET /v1/users/{name}", s.getUser, RoleAuditor)
	s.Handle("POST /v1/users/{name}/disable", s.disableUser)
	// A token that acts as the user. (POST /v1/tokens with "user" is the
	// general form once tokens have their own route.)
	s.Handle("POST /v1/users/{name}/tokens", s.createUserToken)
	s.Handle("GET /v1/ownership", s.listOwnership, RoleOperator, RoleOwner, RoleAuditor)
	s.Handle("PUT /v1/ownership", s.putOwnership)
}

const maxUserBody = 64 << 10

// ownershipFields are what an owner is assigned: CCM domain codes (every
// version), controls as "VERSION/ID" (or "ID" in the default version), and
// optionally the scan scopes the assignment is limited to.
type ownershipFields struct {
	Domains  []string `json:"domains"`
	Controls []string `json:"controls"`
	Scopes   []string `json:"scopes"`
}

// userRequest is the body of POST /v1/users.
type userRequest struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Role  string `json:"role"`
	ownershipFields
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req userRequest
	if !decodeBody(w, r, maxUserBody, &req) {
		return
	}
	own, err := s.ownershipOf(req.ownershipFields)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
		return
	}
	if len(own) > 0 && req.Role != RoleOwner {
		writeError(w, http.StatusBadRequest, "invalid_field", "domains, controls and scopes: only a user with role owner is assigned them")
		return
	}
	p, _ := PrincipalFrom(r.Context())
	own = review.ExpandOwnership(own, s.crosswalk())
	u, err := s.opt.Store.CreateUser(r.Context(), nil, p.Name, store.NewUser{Name: req.Name, Email: req.Email, Role: req.Role}, own)
	if err != nil {
		s.reviewFailed(w, r, err, fmt.Sprintf("user %q", req.Name))
		return
	}
	w.Header().Set("Location", "/v1/users/"+u.Name)
	writeJSON(w, http.StatusCreated, u)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.opt.Store.ListUsers(r.Context())
	if err != nil {
		s.fail(w, r, err, "users")
		return
	}
	if users == nil {
		users = []store.User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": users})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	u, err := s.opt.Store.GetUser(r.Context(), name)
	if err != nil {
		s.fail(w, r, err, fmt.Sprintf("user %q", name))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (s *Server) disableUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _ := PrincipalFrom(r.Context())
	if err := s.opt.Store.DisableUser(r.Context(), p.Name, name); err != nil {
		s.fail(w, r, err, fmt.Sprintf("user %q", name))
		return
	}
	s.getUser(w, r)
}

// userTokenRequest is the body of POST /v1/users/{name}/tokens.
type userTokenRequest struct {
	Name string `json:"name"` // the token's own name (unique among tokens)
}

func (s *Server) createUserToken(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("name")
	var req userTokenRequest
	if !decodeBody(w, r, maxUserBody, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	tok, err := s.opt.Store.CreateUserToken(r.Context(), p.Name, user, req.Name)
	if err != nil {
		s.reviewFailed(w, r, err, fmt.Sprintf("token %q for user %q", req.Name, user))
		return
	}
	// The token is shown once: only its hash is stored.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"name": req.Name, "user": user, "token": tok})
}

func (s *Server) listOwnership(w http.ResponseWriter, r *http.Request) {
	own, err := s.opt.Store.ListOwnership(r.Context())
	if err != nil {
		s.fail(w, r, err, "ownership")
		return
	}
	type item struct {
		Owner     string            `json:"owner"`
		Ownership []store.Ownership `json:"ownership"`
	}
	items := []item{}
	for _, name := range slices.Sorted(maps.Keys(own)) {
		items = append(items, item{Owner: name, Ownership: own[name]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// ownershipRequest is the body of PUT /v1/ownership: the owner's whole set
// of assignments (empty lists remove them all).
type ownershipRequest struct {
	Owner string `json:"owner"`
	ownershipFields
}

func (s *Server) putOwnership(w http.ResponseWriter, r *http.Request) {
	var req ownershipRequest
	if !decodeBody(w, r, maxUserBody, &req) {
		return
	}
	if req.Owner == "" {
		writeError(w, http.StatusBadRequest, "invalid_field", "owner: required")
		return
	}
	own, err := s.ownershipOf(req.ownershipFields)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_field", err.Error())
		return
	}
	p, _ := PrincipalFrom(r.Context())
	after, err := review.SetOwnership(r.Context(), s.opt.Store, reviewActor(p), req.Owner, own, s.crosswalk())
	if err != nil {
		s.reviewFailed(w, r, err, fmt.Sprintf("user %q", req.Owner))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"owner": req.Owner, "ownership": after})
}

// ParseOwnership checks domains ("AIS"), controls ("4.1/TVM-03", or an id
// in the default version) and scopes as POST /v1/users and PUT
// /v1/ownership do, for the CLI, and expands controls across CCM versions.
func ParseOwnership(cats *mapping.Catalogs, domains, controls, scopes []string) ([]store.Ownership, error) {
	s := &Server{opt: Options{Catalogs: cats}}
	own, err := s.ownershipOf(ownershipFields{Domains: domains, Controls: controls, Scopes: scopes})
	if err != nil {
		return nil, err
	}
	return review.ExpandOwnership(own, CatalogCrosswalk(cats)), nil
}

// ownershipOf checks domains and controls against the catalogues and turns
// them into assignments, each limited to scopes when given.
func (s *Server) ownershipOf(f ownershipFields) ([]store.Ownership, error) {
	scopes := []string{}
	for _, sc := range f.Scopes {
		if sc = strings.TrimSpace(sc); sc != "" {
			scopes = appendIfMissing(scopes, sc)
		}
	}
	var out []store.Ownership
	for _, d := range f.Domains {
		code := strings.ToUpper(strings.TrimSpace(d))
		if !s.knownDomain(code) {
			return nil, fmt.Errorf("domains: unknown CCM domain %q", d)
		}
		out = append(out, store.Ownership{Domain: code, Scopes: scopes})
	}
	for _, c := range f.Controls {
		version, id, ok := strings.Cut(strings.TrimSpace(c), "/")
		if !ok {
			version, id = "", version
		}
		v, err := s.ccmVersion(version, true)
		if err != nil {
			return nil, fmt.Errorf("controls: %q: %w", c, err)
		}
		if id, err = s.controlID(id, v); err != nil {
			return nil, fmt.Errorf("controls: %w", err)
		}
		out = append(out, store.Ownership{Version: v, Control: id, Scopes: scopes})
	}
	if len(out) == 0 && len(scopes) > 0 {
		return nil, fmt.Errorf("scopes: limit domains or controls; none given")
	}
	return out, nil
}

func (s *Server) knownDomain(code string) bool {
	cats := s.opt.Catalogs
	if cats == nil {
		return code != ""
	}
	for _, v := range cats.Versions() {
		if cat, ok := cats.Get(v); ok && cat.DomainName(code) != "" {
			return true
		}
	}
	return false
}

// crosswalk finds a control's counterparts in the other CCM versions: the
// controls with exactly the same title (as mapping.Control.SameTitle is
// derived). Retitled controls (v4.1 AIS-04, AIS-05) have none and must be
// assigned in each version.
func (s *Server) crosswalk() review.Crosswalk { return CatalogCrosswalk(s.opt.Catalogs) }

// CatalogCrosswalk is the review package's Crosswalk over the CCM
// catalogues (nil without catalogues).
func CatalogCrosswalk(cats *mapping.Catalogs) review.Crosswalk {
	if cats == nil {
		return nil
	}
	return func(version, id string) []store.ControlRef {
		cat, ok := cats.Get(version)
		if !ok {
			return nil
		}
		ctl, ok := cat.Control(id)
		if !ok || ctl.Title == "" {
			return nil
		}
		var out []store.ControlRef
		for _, v := range cats.Versions() {
			other, ok := cats.Get(v)
			if !ok || other.Version == cat.Version {
				continue
			}
			for _, c := range other.Controls {
				if c.Title == ctl.Title {
					out = append(out, store.ControlRef{Version: other.Version, ID: c.ID})
				}
			}
		}
		return out
	}
}
