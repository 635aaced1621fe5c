package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/starpipe/starpipe/finding"
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
	// Scopes and Kinds limit what the token may upload: scope patterns
	// (finding.MatchScope) and scan kinds. Empty means no limit.
	Scopes []string
	Kinds  []string
}

// TokenSpec is a token to create.
type TokenSpec struct {
	Name string
	// Role is the token's role. For a user's token it is taken from the
	// user (and follows the user's role when it changes): leave it empty
	// or give the user's role.
	Role string
	// User makes the token act as this (enabled) user: the user's role,
	// ownership scopes and name as the actor of what it does.
	User   string
	Scopes []string // scope patterns (finding.MatchScope); empty: any scope
	Kinds  []string // scan kinds; empty: any kind
}

// Limits on a token's lists, so that a token row stays small and the check
// on every upload cheap.
const (
	maxTokenName   = 200
	maxTokenScopes = 100
)

// validate checks the spec, naming the field at fault, and returns it with
// its lists sorted and de-duplicated.
func (t TokenSpec) validate() (TokenSpec, error) {
	bad := func(param, value, reason string) (TokenSpec, error) {
		return t, &InvalidArgumentError{Param: param, Value: value, Reason: reason}
	}
	if t.Name == "" || len(t.Name) > maxTokenName || !utf8.ValidString(t.Name) || strings.ContainsFunc(t.Name, unicode.IsControl) {
		return bad("name", t.Name, fmt.Sprintf("a token name is 1 to %d characters of text", maxTokenName))
	}
	if !validRole(t.Role) && !(t.User != "" && t.Role == "") {
		return bad("role", t.Role, "allowed: "+strings.Join(Roles(), ", "))
	}
	if len(t.Scopes) > maxTokenScopes {
		return bad("scopes", strconv.Itoa(len(t.Scopes)), fmt.Sprintf("at most %d scope patterns", maxTokenScopes))
	}
	for _, p := range t.Scopes {
		if err := finding.ValidScopePattern(p); err != nil {
			return bad("scopes", p, err.Error())
		}
	}
	for _, k := range t.Kinds {
		if _, err := finding.ParseScanKind(k); err != nil {
			return bad("kinds", k, err.Error())
		}
	}
	t.Scopes = sortedSet(t.Scopes)
	t.Kinds = sortedSet(t.Kinds)
	return t, nil
}

func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
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

// CreateToken makes a token without scope or kind limits, created by
// "system" as the activity log records it. See IssueToken.
func (s *Store) CreateToken(ctx context.Context, name, role string) (string, error) {
	return s.IssueToken(ctx, TokenSpec{Name: name, Role: role}, "system")
}

// IssueToken makes a new API token and returns it. Only its hash is
// stored: the token cannot be shown again. The activity log records the
// creation (name, role, limits; never the token) with actor, in the same
// transaction. A taken name is ErrConflict; an invalid field is an
// *InvalidArgumentError naming it.
func (s *Store) IssueToken(ctx context.Context, spec TokenSpec, actor string) (string, error) {
	spec, err := spec.validate()
	if err != nil {
		return "", fmt.Errorf("creating token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("creating token %q: reading random bytes: %w", spec.Name, err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var user *string
		after := map[string]any{"role": spec.Role, "scopes": spec.Scopes, "kinds": spec.Kinds}
		if spec.User != "" {
			role, err := userRoleForToken(ctx, tx, spec)
			if err != nil {
				return err
			}
			spec.Role, user = role, &spec.User
			after["role"], after["user"] = role, spec.User
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_tokens (name, token_hash, role, scopes, kinds, user_name) VALUES ($1, $2, $3, $4, $5, $6)`,
			spec.Name, hashToken(token), spec.Role, spec.Scopes, spec.Kinds, user); err != nil {
			return err
		}
		_, err := s.appendActivity(ctx, tx, Activity{
			Actor: actor, Action: "token.created", SubjectType: "token", SubjectID: spec.Name, After: after,
		})
		return err
	})
	if isUniqueViolation(err) {
		return "", fmt.Errorf("creating token %q: %w", spec.Name, ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("creating token %q: %w", spec.Name, err)
	}
	return token, nil
}

// userRoleForToken is the role of the enabled user a token is made for,
// locked against a concurrent change. An unknown or disabled user is
// ErrNotFound; a role other than the user's is an *InvalidArgumentError.
func userRoleForToken(ctx context.Context, tx pgx.Tx, spec TokenSpec) (string, error) {
	var role string
	err := tx.QueryRow(ctx, `SELECT role FROM users WHERE name = $1 AND disabled_at IS NULL FOR SHARE`, spec.User).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("user %q: %w", spec.User, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("loading user %q: %w", spec.User, err)
	}
	if spec.Role != "" && spec.Role != role {
		return "", &InvalidArgumentError{Param: "role", Value: spec.Role,
			Reason: fmt.Sprintf("a token acting as user %q has the user's role %q; leave role out", spec.User, role)}
	}
	return role, nil
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

// RevokeToken makes a token unusable from now on and records who did it
// in the activity log. Revoking twice is not an error and logs nothing the
// second time; an unknown name is ErrNotFound.
func (s *Store) RevokeToken(ctx context.Context, name, actor string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var role string
		var revoked bool
		err := tx.QueryRow(ctx, `SELECT role, revoked_at IS NOT NULL FROM api_tokens WHERE name = $1 FOR UPDATE`, name).Scan(&role, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || revoked {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE name = $1`, name); err != nil {
			return err
		}
		_, err = s.appendActivity(ctx, tx, Activity{
			Actor: actor, Action: "token.revoked", SubjectType: "token", SubjectID: name,
			Before: map[string]any{"role": role, "revoked": false}, After: map[string]any{"role": role, "revoked": true},
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("revoking token %q: %w", name, err)
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
			SELECT k.id, k.name, coalesce(u.role, k.role) AS role, coalesce(k.user_name, '') AS user_name,
			       k.scopes, k.kinds, k.last_used_at
			FROM api_tokens k LEFT JOIN users u ON u.name = k.user_name
			WHERE k.token_hash = $1 AND k.revoked_at IS NULL
			  AND (k.user_name IS NULL OR u.disabled_at IS NULL)
		), touch AS (
			UPDATE api_tokens SET last_used_at = now()
			FROM t
			WHERE api_tokens.id = t.id
			  AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
		)
		SELECT id::text, name, role, user_name, scopes, kinds FROM t`, hashToken(token)).Scan(&p.ID, &p.Name, &p.Role, &p.User, &p.Scopes, &p.Kinds)
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

// TokenInfo describes a token without its secret, which is not stored
// (api.Token is its JSON shape).
type TokenInfo struct {
	Name       string
	Role       string   // the user's current role for a user's token
	User       string   // "" for a named service's token
	Scopes     []string // empty: any scope
	Kinds      []string // empty: any kind
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// ListTokens lists every token, revoked ones included.
func (s *Store) ListTokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT k.name, coalesce(u.role, k.role), coalesce(k.user_name, ''), k.scopes, k.kinds, k.created_at, k.last_used_at, k.revoked_at
		FROM api_tokens k LEFT JOIN users u ON u.name = k.user_name ORDER BY k.name`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TokenInfo, error) {
		var t TokenInfo
		err := r.Scan(&t.Name, &t.Role, &t.User, &t.Scopes, &t.Kinds, &t.CreatedAt, &t.LastUsedAt, &t.RevokedAt)
		return t, err
	})
}
