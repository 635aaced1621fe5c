package api

import (
	"time"

	"github.com/starpipe/starpipe/store"
)

// Token is an API token's metadata, as GET /v1/tokens and
// `starpipe tokens list --json` show it; the token itself is never stored,
// so never shown.
type Token struct {
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	User       string     `json:"user,omitempty"` // the user a token acts as
	Scopes     []string   `json:"scopes"`         // empty: any scope
	Kinds      []string   `json:"kinds"`          // empty: any kind
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// TokenOf is the wire form of a token's metadata.
func TokenOf(t store.TokenInfo) Token {
	return Token{Name: t.Name, Role: t.Role, User: t.User, Scopes: nonNilSlice(t.Scopes), Kinds: nonNilSlice(t.Kinds),
		CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}
