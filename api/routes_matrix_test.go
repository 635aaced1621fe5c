package api

import (
	"bytes"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// everyone is every role; admin is allowed everywhere.
var everyone = []string{RoleAdmin, RoleOperator, RoleOwner, RoleAuditor, RoleIngest}

// routeAccess is the expected allow-list of every authenticated route: the
// roles that may call it. TestRouteRoleMatrix fails when a registered
// route has no entry here (add one with the route) or an entry names a
// route no longer registered.
var routeAccess = map[string][]string{
	"GET /v1/openapi.yaml": everyone,

	"POST /v1/runs":              {RoleAdmin, RoleOperator, RoleIngest},
	"GET /v1/runs":               {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"GET /v1/runs/{id}":          everyone,
	"POST /v1/runs/{id}/release": {RoleAdmin, RoleOperator},
	"POST /v1/runs/{id}/discard": {RoleAdmin, RoleOperator},

	"GET /v1/findings":      {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"GET /v1/findings/{id}": {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"GET /v1/controls":      {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},

	"GET /v1/schedules":               {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"POST /v1/schedules":              {RoleAdmin, RoleOperator},
	"GET /v1/schedules/{name}":        {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"PUT /v1/schedules/{name}":        {RoleAdmin, RoleOperator},
	"DELETE /v1/schedules/{name}":     {RoleAdmin, RoleOperator},
	"GET /v1/schedules/{name}/ledger": {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},

	"GET /v1/credentials":           {RoleAdmin, RoleOperator, RoleAuditor},
	"POST /v1/credentials":          {RoleAdmin, RoleOperator},
	"GET /v1/credentials/{name}":    {RoleAdmin, RoleOperator, RoleAuditor},
	"PUT /v1/credentials/{name}":    {RoleAdmin, RoleOperator},
	"DELETE /v1/credentials/{name}": {RoleAdmin},

	"GET /v1/tokens":                       {RoleAdmin, RoleAuditor},
	"POST /v1/users":                       {RoleAdmin},
	"GET /v1/users":                        {RoleAdmin, RoleAuditor},
	"GET /v1/users/{name}":                 {RoleAdmin, RoleAuditor},
	"POST /v1/users/{name}/disable":        {RoleAdmin},
	"POST /v1/users/{name}/tokens":         {RoleAdmin},
	"GET /v1/ownership":                    {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"PUT /v1/ownership":                    {RoleAdmin},
	"POST /v1/findings/{id}/review":        {RoleAdmin, RoleOwner},
	"POST /v1/findings/review":             {RoleAdmin, RoleOwner},
	"GET /v1/sla/policies":                 {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"POST /v1/exceptions":                  {RoleAdmin, RoleOwner},
	"GET /v1/exceptions":                   {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"GET /v1/exceptions/{id}":              {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"POST /v1/exceptions/{id}/approve":     {RoleAdmin, RoleOwner},
	"GET /v1/activity":                     {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"GET /v1/activity/export":              {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"POST /v1/tokens":                      {RoleAdmin},
	"DELETE /v1/tokens/{name}":             {RoleAdmin},
	"POST /v1/findings":                    {RoleAdmin, RoleOperator, RoleOwner},
	"GET /v1/findings/{id}/notes":          {RoleAdmin, RoleOperator, RoleOwner, RoleAuditor},
	"POST /v1/findings/{id}/notes":         {RoleAdmin, RoleOperator, RoleOwner},
	"PATCH /v1/findings/{id}/notes/{note}": {RoleAdmin, RoleOperator, RoleOwner},
	"POST /v1/findings/{id}/retest":        {RoleAdmin, RoleOperator, RoleOwner},
}

// matrixRequests gives a route a request that its allowed callers can get
// through (a body, the query an upload needs); others send "{}".
var matrixRequests = map[string]struct{ query, body string }{
	"POST /v1/runs": {"scope=https://shop.example.com&kind=external", nucleiLine},
}

// newFullServer is a server with every dependency set, so that every route
// group registers, over a fresh database.
func newFullServer(t *testing.T) (*Server, *store.Store) {
	t.Helper()
	st, _ := storetest.New(t)
	cats, err := mapping.DefaultCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	key, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := vault.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{
		Auth: storeAuthenticator{st}, Store: st, Catalogs: cats, Keyring: keyring,
		Intake: pipeline.NewIntake(st, 1<<20, nil), HeldRuns: pipeline.NewHeldRuns(st, nil),
	}), st
}

// TestRouteRoleMatrix calls every registered route as every role, as a
// scoped token (an operator limited to the scope and kind of the upload it
// sends), without a token, with a revoked token and with a made-up one:
// allowed roles never get 401 or 403, other roles get 403, and the callers
// without a live token get 401.
func TestRouteRoleMatrix(t *testing.T) {
	t.Parallel()
	srv, st := newFullServer(t)
	ctx := t.Context()

	type caller struct {
		name, token string
		role        string // "" for the callers without a live token
	}
	var callers []caller
	for _, role := range everyone {
		tok, err := st.CreateToken(ctx, "matrix-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		callers = append(callers, caller{role, tok, role})
	}
	scoped, err := st.IssueToken(ctx, store.TokenSpec{Name: "matrix-scoped", Role: RoleOperator,
		Scopes: []string{"https://*.example.com"}, Kinds: []string{"external"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := st.CreateToken(ctx, "matrix-revoked", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(ctx, "matrix-revoked", "test"); err != nil {
		t.Fatal(err)
	}
	callers = append(callers,
		caller{"scoped operator", scoped, RoleOperator},
		caller{"no token", "", ""},
		caller{"revoked admin", revoked, ""},
		caller{"made-up token", "sp_" + strings.Repeat("x", 43), ""},
	)

	if len(srv.routes) == 0 {
		t.Fatal("no routes registered")
	}
	for _, pattern := range srv.routes {
		if _, ok := routeAccess[pattern]; !ok {
			t.Errorf("route %s has no entry in routeAccess: add the roles allowed to call it", pattern)
		}
	}
	for _, pattern := range slices.Sorted(maps.Keys(routeAccess)) {
		if !slices.Contains(srv.routes, pattern) {
			t.Errorf("routeAccess names %s, which is not registered", pattern)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, pattern := range srv.routes {
		allowed := routeAccess[pattern]
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{id}", "7c1e5f0c-1b1a-4c7e-9a52-0d4c1f1d2e3a", "{name}", "matrix-nothing").Replace(path)
		rq := matrixRequests[pattern]
		if rq.body == "" {
			rq.body = "{}"
		}
		if rq.query != "" {
			path += "?" + rq.query
		}
		for _, c := range callers {
			req := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader([]byte(rq.body)))
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			var want string
			ok := false
			switch {
			case c.role == "":
				want, ok = "401", rec.Code == http.StatusUnauthorized
			case slices.Contains(allowed, c.role):
				want, ok = "neither 401 nor 403", rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden
			default:
				want, ok = "403", rec.Code == http.StatusForbidden
			}
			if !ok {
				t.Errorf("%s as %s: %d %s, want %s", pattern, c.name, rec.Code, strings.TrimSpace(rec.Body.String()), want)
			}
		}
	}
}
