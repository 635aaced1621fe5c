package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// API roles, as the api_tokens.role check constraint allows them.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleOwner    = "owner"
	RoleAuditor  = "auditor"
	RoleIngest   = "ingest"
)

// Roles lists every role.
func Roles() []string {
	return []string{RoleAdmin, RoleOperator, RoleOwner, RoleAuditor, RoleIngest}
}

// tokenPrefix marks starpipe tokens so that secret scanners and humans can
// recognise one, and so that a pasted password is rejected before hashing.
const tokenPrefix = "sp_"

// Principal is who a token authenticates.
type Principal struct {
	ID   string // token id (uuid)
	Name string // token name
	Role string // the user's role for a user's token
	// User is the user the token acts as, "" for a named service's token.
	User string
}

// Actor is who a change made with the token is recorded under: the user,
// or the token's name for a service.
func (p Principal) Actor() string {
	if p.User != "" {
		return p.User
	}
	return p.Name
}

// hashToken is a plain SHA-256. Tokens carry 256 bits from crypto/rand, so
// there is nothing to brute-force and no need for a salted slow hash; a
// deterministic hash is what lets Authenticate look the token up by index.
func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateToken makes a new API token with the given role and returns it. Only
// its hash is stored: the token cannot be shown again. A taken name is
// ErrConflict.
func (s *Store) CreateToken(ctx context.Context, name, role string) (string, error) {
	if name == "" {
		return "", errors.New("creating token: empty name")
	}
	if !validRole(role) {
		return "", fmt.Errorf("creating token %q: invalid role %q (allowed: %s)", name, role, strings.Join(Roles(), ", "))
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("creating token %q: reading random bytes: %w", name, err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	_, err := s.pool.Exec(ctx, `INSERT INTO api_tokens (name, token_hash, role) VALUES ($1, $2, $3)`, name, hashToken(token), role)
	if isUniqueViolation(err) {
		return "", fmt.Errorf("creating token %q: %w", name, ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("creating token %q: %w", name, err)
	}
	return token, nil
}

// TokenExists reports whether a token (revoked or not) has this name, so
// that bootstrap code creates the first admin token only once.
func (s *Store) TokenExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = $1)`, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("looking up token %q: %w", name, err)
	}
	return ok, nil
}

// RevokeToken makes a token unusable from now on. Revoking twice is not an
// error; an unknown name is ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("revoking token %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoking token %q: %w", name, ErrNotFound)
	}
	return nil
}

// Authenticate returns the principal of a live token, or ErrUnauthenticated.
// last_used_at is refreshed at most once a minute per token so that a busy
// client does not turn every request into a write.
func (s *Store) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return Principal{}, ErrUnauthenticated
	}
	var p Principal
	err := s.pool.QueryRow(ctx, `
		WITH t AS (
			-- A user's token has the user's current role, and stops
			-- working when the user is disabled.
			SELECT k.id, k.name, coalesce(u.role, k.role) AS role, coalesce(k.user_name, '') AS user_name, k.last_used_at
			FROM api_tokens k LEFT JOIN users u ON u.name = k.user_name
			WHERE k.token_hash = $1 AND k.revoked_at IS NULL
			  AND (k.user_name IS NULL OR u.disabled_at IS NULL)
		), touch AS (
			UPDATE api_tokens SET last_used_at = now()
			FROM t
			WHERE api_tokens.id = t.id
			  AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
		)
		SELECT id::text, name, role, user_name FROM t`, hashToken(token)).Scan(&p.ID, &p.Name, &p.Role, &p.User)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticating token: %w", err)
	}
	return p, nil
}

func validRole(r string) bool {
	for _, x := range Roles() {
		if r == x {
			return true
		}
	}
	return false
}

// TokenInfo describes a token without its secret (which is not stored).
type TokenInfo struct {
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// ListTokens lists every token, revoked ones included.
func (s *Store) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TokenInfo, error) {
		var t TokenInfo
		err := r.Scan(&t.Name, &t.Role, &t.CreatedAt, &t.LastUsedAt, &t.RevokedAt)
		return t, err
	})
}
