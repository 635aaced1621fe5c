package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/store"
)

// TestUserTokenAPI: POST /v1/tokens with "user" makes a token that acts as
// the user: the user's role (a different role is refused), the user's name
// as the actor of what it changes, the user shown in GET /v1/tokens; an
// unknown user is 404; the creation is recorded with the admin as actor.
func TestUserTokenAPI(t *testing.T) {
	t.Parallel()
	srv, st := newFullServer(t)
	admin, err := st.CreateToken(t.Context(), "root", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if rec := call(t, srv, admin, http.MethodPost, "/v1/users",
		`{"name":"ann","email":"ann@example.com","role":"owner","domains":["AIS"]}`); rec.Code != http.StatusCreated {
		t.Fatalf("POST /v1/users = %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, srv, admin, http.MethodPost, "/v1/tokens", `{"name":"ann-x","user":"ann","role":"admin"}`); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "role") {
		t.Fatalf("user token with another role = %d %s, want 400 naming role", rec.Code, rec.Body)
	}
	if rec := call(t, srv, admin, http.MethodPost, "/v1/tokens", `{"name":"bob-x","user":"bob"}`); rec.Code != http.StatusNotFound {
		t.Fatalf("token for unknown user = %d %s, want 404", rec.Code, rec.Body)
	}
	rec := call(t, srv, admin, http.MethodPost, "/v1/tokens", `{"name":"ann-laptop","user":"ann"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST /v1/tokens user = %d %s", rec.Code, rec.Body)
	}
	var created tokenCreated
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	if created.Role != RoleOwner || created.User != "ann" || !strings.HasPrefix(created.Token, "sp_") {
		t.Fatalf("created = %+v, want role owner, user ann", created)
	}
	p, err := st.Authenticate(t.Context(), created.Token)
	if err != nil || p.Role != store.RoleOwner || p.User != "ann" || p.Actor() != "ann" {
		t.Fatalf("Authenticate = %+v, %v; want owner acting as ann", p, err)
	}
	// An owner may not create tokens: the route is admin only.
	if rec := call(t, srv, created.Token, http.MethodPost, "/v1/tokens", `{"name":"x","role":"admin"}`); rec.Code != http.StatusForbidden {
		t.Fatalf("owner POST /v1/tokens = %d, want 403", rec.Code)
	}
	rec = call(t, srv, admin, http.MethodGet, "/v1/tokens", "")
	var list struct{ Items []Token }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tk := range list.Items {
		if tk.Name == "ann-laptop" {
			found = tk.User == "ann" && tk.Role == RoleOwner
		}
	}
	if !found {
		t.Fatalf("GET /v1/tokens = %s, want ann-laptop with user ann, role owner", rec.Body)
	}
	// The creation is recorded with who made it and for whom.
	rows, _, err := st.ListActivity(t.Context(), store.ActivityFilter{SubjectType: "token", SubjectID: "ann-laptop"})
	if err != nil || len(rows) != 1 || rows[0].Actor != "root" || !strings.Contains(string(rows[0].After), `"user": "ann"`) &&
		!strings.Contains(string(rows[0].After), `"user":"ann"`) {
		t.Fatalf("activity = %+v, %v; want one token.created by root for user ann", rows, err)
	}
	// Disabling ann stops her token.
	if rec := call(t, srv, admin, http.MethodPost, "/v1/users/ann/disable", ""); rec.Code != http.StatusOK {
		t.Fatalf("disable = %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, srv, created.Token, http.MethodGet, "/v1/findings", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("disabled user's token = %d, want 401", rec.Code)
	}
}
