package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

// Scan credentials are write-only: secrets go in through POST and PUT and
// never come out of any route, not even sealed. Answers and errors name the
// credential, its kind and key id, nothing more.
//
// Roles: admin and operator may create and replace credentials, because
// operators run the authenticated scans and write the schedules that name
// them, and write-only means an operator cannot read back what anyone
// stored. Deleting is admin-only: it breaks every schedule that names the
// credential. Admin, operator and auditor may list the metadata, so that an
// audit can see which credentials exist, of what kind, under which key.

func init() { routeGroups = append(routeGroups, (*Server).registerCredentials) }

// maxCredentialBody bounds a credential request: a cookie jar or a long
// token fits many times over, and a larger body is not a credential.
const maxCredentialBody = 64 << 10

func (s *Server) registerCredentials() {
	if s.opt.Store == nil || s.opt.Keyring == nil {
		return
	}
	s.Handle("POST /v1/credentials", s.createCredential, RoleOperator)
	s.Handle("PUT /v1/credentials/{name}", s.putCredential, RoleOperator)
	s.Handle("GET /v1/credentials", s.listCredentials, RoleOperator, RoleAuditor)
	s.Handle("GET /v1/credentials/{name}", s.getCredential, RoleOperator, RoleAuditor)
	s.Handle("DELETE /v1/credentials/{name}", s.deleteCredential)
}

// credentialErrorBody is a 422 answer: which field is wrong and why. The
// reasons come from vault and never quote the secret.
type credentialErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field"`
	Reason  string `json:"reason"`
}

// decodeCredential reads and validates a credential request, answering
// the client itself when it returns false. Decoding errors are described
// without quoting the body, which holds a secret.
func (s *Server) decodeCredential(w http.ResponseWriter, r *http.Request, pathName string) (vault.Credential, bool) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCredentialBody))
	dec.DisallowUnknownFields()
	var req credentialRequest
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", maxCredentialBody))
		case errors.As(err, &syntax):
			// SyntaxError's message quotes the offending character.
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("request body is not valid JSON (near byte %d)", syntax.Offset))
		case errors.As(err, &typ):
			want := "a JSON string"
			switch typ.Field {
			case "targets":
				want = "a JSON array of URL strings"
			case "allow_http":
				want = "true or false"
			}
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("field %q must be %s", typ.Field, want))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			writeError(w, http.StatusBadRequest, "bad_request", "request body has an "+strings.TrimPrefix(err.Error(), "json: ")+
				" (allowed: name, kind, secret, username, header_name, targets, allow_http)")
		case strings.Contains(err.Error(), "placeholder"):
			// vault.Secret refuses "[REDACTED]" so that an echoed value never
			// overwrites the real secret.
			writeCredentialError(w, &vault.CredentialError{Name: req.Name, Field: "secret",
				Reason: "is the redaction placeholder " + vault.Redacted + "; send the real secret"})
		default:
			writeError(w, http.StatusBadRequest, "bad_request", "request body must be one JSON object with name, kind, secret, username, header_name, targets and allow_http")
		}
		return vault.Credential{}, false
	}
	if pathName != "" {
		if req.Name != "" && req.Name != pathName {
			writeCredentialError(w, &vault.CredentialError{Name: req.Name, Field: "name", Reason: "differs from the name in the URL"})
			return vault.Credential{}, false
		}
		req.Name = pathName
	}
	c := vault.Credential{Name: req.Name, Kind: vault.CredentialKind(req.Kind), Secret: req.Secret,
		Username: req.Username, HeaderName: req.HeaderName, Targets: req.Targets, AllowHTTP: req.AllowHTTP}
	if err := credentials.Validate(c); err != nil {
		var ce *vault.CredentialError
		if errors.As(err, &ce) {
			writeCredentialError(w, ce)
		} else {
			writeError(w, http.StatusUnprocessableEntity, "invalid_credential", "invalid credential")
		}
		return vault.Credential{}, false
	}
	return c, true
}

func writeCredentialError(w http.ResponseWriter, ce *vault.CredentialError) {
	writeJSON(w, http.StatusUnprocessableEntity, credentialErrorBody{
		Error: "invalid_credential", Message: ce.Error(), Field: ce.Field, Reason: ce.Reason})
}

func actorOf(r *http.Request) string {
	p, _ := PrincipalFrom(r.Context())
	return p.Name
}

func (s *Server) createCredential(w http.ResponseWriter, r *http.Request) {
	c, ok := s.decodeCredential(w, r, "")
	if !ok {
		return
	}
	id, err := credentials.Create(r.Context(), s.opt.Store, s.opt.Keyring, c, actorOf(r))
	if errors.Is(err, credentials.ErrExists) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("credential %q already exists; PUT /v1/credentials/%s replaces it", c.Name, c.Name))
		return
	}
	if err != nil {
		s.credentialFailed(w, r, "creating credential", c.Name, err)
		return
	}
	w.Header().Set("Location", "/v1/credentials/"+url.PathEscape(c.Name))
	writeJSON(w, http.StatusCreated, CredentialWritten{ID: id, Name: c.Name, Kind: string(c.Kind), KeyID: s.opt.Keyring.CurrentID()})
}

func (s *Server) putCredential(w http.ResponseWriter, r *http.Request) {
	c, ok := s.decodeCredential(w, r, r.PathValue("name"))
	if !ok {
		return
	}
	id, created, err := credentials.Save(r.Context(), s.opt.Store, s.opt.Keyring, c, actorOf(r))
	if err != nil {
		s.credentialFailed(w, r, "storing credential", c.Name, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/credentials/"+url.PathEscape(c.Name))
	}
	writeJSON(w, status, CredentialWritten{ID: id, Name: c.Name, Kind: string(c.Kind), KeyID: s.opt.Keyring.CurrentID()})
}

func (s *Server) listCredentials(w http.ResponseWriter, r *http.Request) {
	list, err := s.opt.Store.ListCredentials(r.Context())
	if err != nil {
		s.credentialFailed(w, r, "listing credentials", "", err)
		return
	}
	out := make([]CredentialView, 0, len(list))
	for _, m := range list {
		out = append(out, CredentialViewOf(m))
	}
	writeJSON(w, http.StatusOK, CredentialList{Credentials: out})
}

func (s *Server) getCredential(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, err := s.opt.Store.CredentialMetadata(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no credential named %q", name))
		return
	}
	if err != nil {
		s.credentialFailed(w, r, "reading credential", name, err)
		return
	}
	writeJSON(w, http.StatusOK, CredentialViewOf(m))
}

func (s *Server) deleteCredential(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.opt.Store.DeleteCredential(r.Context(), name, actorOf(r))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no credential named %q", name))
		return
	}
	if err != nil {
		s.credentialFailed(w, r, "deleting credential", name, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// credentialFailed answers an error of doing what to a credential. Store
// and vault errors name the credential but never hold its secret.
func (s *Server) credentialFailed(w http.ResponseWriter, r *http.Request, what, name string, err error) {
	s.fail(w, r, fmt.Errorf("%s %q: %w", what, name, err), what)
}
