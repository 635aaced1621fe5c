package api

import (
	"time"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

// The JSON shapes of the credentials routes (openapi.yaml:
// CredentialRequest, CredentialWritten, CredentialView). Secrets go in
// (credentialRequest) and never come out: no answer has a field for one.

// credentialRequest is the body of POST and PUT. Secret is a vault.Secret
// so that the request prints as [REDACTED] wherever it might be logged.
type credentialRequest struct {
	Name       string       `json:"name"`
	Kind       string       `json:"kind"`
	Secret     vault.Secret `json:"secret"`
	Username   string       `json:"username"`
	HeaderName string       `json:"header_name"`
	// Targets are the URL prefixes the credential may be sent to
	// (required); AllowHTTP lets it go over plain http.
	Targets   []string `json:"targets"`
	AllowHTTP bool     `json:"allow_http"`
}

// CredentialWritten answers a create or replace.
type CredentialWritten struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	KeyID string `json:"key_id"`
}

// CredentialView is a credential's metadata as GET shows it.
type CredentialView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	Username   string     `json:"username,omitempty"`
	HeaderName string     `json:"header_name,omitempty"`
	KeyID      string     `json:"key_id"`
	Targets    []string   `json:"targets"`
	AllowHTTP  bool       `json:"allow_http"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	CreatedBy  string     `json:"created_by"`
	RotatedAt  *time.Time `json:"rotated_at,omitempty"`
}

// CredentialList is the answer of GET /v1/credentials.
type CredentialList struct {
	Credentials []CredentialView `json:"credentials"`
}

// CredentialViewOf is the wire form of a credential's metadata.
func CredentialViewOf(m store.CredentialMeta) CredentialView {
	return CredentialView{ID: m.ID, Name: m.Name, Kind: m.Kind, Username: m.Username, HeaderName: m.HeaderName,
		KeyID: m.KeyID, Targets: nonNilSlice(m.Targets), AllowHTTP: m.AllowHTTP, CreatedAt: m.CreatedAt,
		UpdatedAt: m.UpdatedAt, CreatedBy: m.CreatedBy, RotatedAt: m.RotatedAt}
}
