package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Users are named people (or named services) with a role. A token that
// belongs to a user acts as that user; ownership assigns owners to CCM
// domains and controls.

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,127}$`)

// User is a named user.
type User struct {
	Name       string      `json:"name"`
	Email      string      `json:"email"`
	Role       string      `json:"role"`
	CreatedAt  time.Time   `json:"created_at"`
	CreatedBy  string      `json:"created_by"`
	DisabledAt *time.Time  `json:"disabled_at"`
	Ownership  []Ownership `json:"ownership"` // what the user owns (owners only, in practice)
}

// Ownership is one assignment of an owner to a CCM domain (any version) or
// to one control of one CCM version, optionally limited to scan scopes.
type Ownership struct {
	Domain  string   `json:"domain,omitempty"`
	Version string   `json:"version,omitempty"`
	Control string   `json:"control,omitempty"`
	Via     string   `json:"via,omitempty"` // "VERSION/ID" of the assignment this one was derived from by title
	Scopes  []string `json:"scopes"`
}

// Key identifies an assignment within an owner's set.
func (o Ownership) Key() string {
	if o.Domain != "" {
		return "domain:" + o.Domain
	}
	return o.Version + "/" + o.Control
}

// UserError is a user or ownership field the store refuses; the API answers
// it with 400.
type UserError struct {
	Field, Reason string
}

func (e *UserError) Error() string { return e.Field + ": " + e.Reason }

// NewUser is what CreateUser stores.
type NewUser struct {
	Name, Email, Role string
}

func (u NewUser) validate() error {
	if !userNameRE.MatchString(u.Name) {
		return &UserError{"name", fmt.Sprintf("%q: lower-case letters, digits, '.', '_', '@', '-', starting with a letter or digit, at most 128", u.Name)}
	}
	if !validRole(u.Role) {
		return &UserError{"role", fmt.Sprintf("%q is not one of %s", u.Role, strings.Join(Roles(), ", "))}
	}
	if len(u.Email) > 320 || (u.Email != "" && (!strings.Contains(u.Email, "@") || strings.ContainsAny(u.Email, " \t\r\n<>"))) {
		return &UserError{"email", fmt.Sprintf("%q is not an e-mail address", u.Email)}
	}
	return nil
}

// CreateUser stores a user, with its ownership when given, and the activity
// row naming actor, in tx (nil: its own transaction). A taken name is
// ErrConflict.
func (s *Store) CreateUser(ctx context.Context, tx *Tx, actor string, u NewUser, own []Ownership) (User, error) {
	if err := u.validate(); err != nil {
		return User{}, err
	}
	var out User
	err := s.within(ctx, tx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (name, email, role, created_by) VALUES ($1, $2, $3, $4)`,
			u.Name, u.Email, u.Role, actor)
		if isUniqueViolation(err) {
			return fmt.Errorf("creating user %q: %w", u.Name, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("creating user %q: %w", u.Name, err)
		}
		if len(own) > 0 {
			if err := replaceOwnership(ctx, tx, actor, u.Name, own); err != nil {
				return err
			}
		}
		if out, err = getUser(ctx, tx, u.Name); err != nil {
			return err
		}
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "user.created", SubjectType: "user", SubjectID: u.Name, After: out})
		return err
	})
	return out, err
}

// within runs fn in tx when given, else in a transaction of its own.
func (s *Store) within(ctx context.Context, tx *Tx, fn func(pgx.Tx) error) error {
	if tx != nil {
		return fn(tx.tx)
	}
	return s.inTx(ctx, fn)
}

// GetUser returns a user with its ownership; an unknown name is
// ErrNotFound.
func (s *Store) GetUser(ctx context.Context, name string) (User, error) {
	return getUser(ctx, s.pool, name)
}

func getUser(ctx context.Context, q DBTX, name string) (User, error) {
	var u User
	err := q.QueryRow(ctx, `SELECT name, email, role, created_at, created_by, disabled_at FROM users WHERE name = $1`, name).
		Scan(&u.Name, &u.Email, &u.Role, &u.CreatedAt, &u.CreatedBy, &u.DisabledAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("loading user %q: %w", name, err)
	}
	all, err := listOwnership(ctx, q, name)
	if err != nil {
		return User{}, err
	}
	u.Ownership = all[name]
	if u.Ownership == nil {
		u.Ownership = []Ownership{}
	}
	return u, nil
}

// ListUsers lists every user, disabled ones included, by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, _ := s.pool.Query(ctx, `SELECT name, email, role, created_at, created_by, disabled_at FROM users ORDER BY name`)
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) {
		var u User
		err := r.Scan(&u.Name, &u.Email, &u.Role, &u.CreatedAt, &u.CreatedBy, &u.DisabledAt)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	own, err := listOwnership(ctx, s.pool, "")
	if err != nil {
		return nil, err
	}
	for i := range users {
		users[i].Ownership = own[users[i].Name]
		if users[i].Ownership == nil {
			users[i].Ownership = []Ownership{}
		}
	}
	return users, nil
}

// DisableUser disables a user: its tokens stop authenticating and it owns
// nothing from then on (its assignments are kept for the record). Disabling
// twice is not an error; an unknown name is ErrNotFound.
func (s *Store) DisableUser(ctx context.Context, actor, name string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var was *time.Time
		err := tx.QueryRow(ctx, `SELECT disabled_at FROM users WHERE name = $1 FOR UPDATE`, name).Scan(&was)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("disabling user %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("disabling user %q: %w", name, err)
		}
		if was != nil {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET disabled_at = now(), updated_at = now() WHERE name = $1`, name); err != nil {
			return fmt.Errorf("disabling user %q: %w", name, err)
		}
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "user.disabled", SubjectType: "user", SubjectID: name,
			Before: map[string]any{"disabled": false}, After: map[string]any{"disabled": true}})
		return err
	})
}

// CreateUserToken makes a token named tokenName that acts as user: it has
// the user's role and scopes, now and after they change, and the user's
// name is the actor of what it does. It is returned once. A disabled or
// unknown user is ErrNotFound; a taken token name is ErrConflict.
func (s *Store) CreateUserToken(ctx context.Context, actor, user, tokenName string) (string, error) {
	if tokenName == "" {
		return "", &UserError{"name", "empty token name"}
	}
	return s.IssueToken(ctx, TokenSpec{Name: tokenName, User: user}, actor)
}

// SetOwnership replaces owner's assignments with own (empty removes them
// all) and records the change. The owner must be a user with role owner
// (ErrNotFound for an unknown user, *UserError for another role). Control
// assignments must already carry their derived counterparts (Via set); the
// caller, which holds the CCM catalogues, adds them.
func (s *Store) SetOwnership(ctx context.Context, actor, owner string, own []Ownership) (before, after []Ownership, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM users WHERE name = $1 FOR UPDATE`, owner).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", owner, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("loading user %q: %w", owner, err)
		}
		if role != RoleOwner {
			return &UserError{"owner", fmt.Sprintf("user %q has role %s; only owners are assigned domains and controls", owner, role)}
		}
		prev, err := listOwnership(ctx, tx, owner)
		if err != nil {
			return err
		}
		before = nonNilOwnership(prev[owner])
		if err := replaceOwnership(ctx, tx, actor, owner, own); err != nil {
			return err
		}
		now, err := listOwnership(ctx, tx, owner)
		if err != nil {
			return err
		}
		after = nonNilOwnership(now[owner])
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "ownership.set", SubjectType: "user", SubjectID: owner,
			Before: before, After: after})
		return err
	})
	return before, after, err
}

func nonNilOwnership(o []Ownership) []Ownership {
	if o == nil {
		return []Ownership{}
	}
	return o
}

func replaceOwnership(ctx context.Context, tx pgx.Tx, actor, owner string, own []Ownership) error {
	if _, err := tx.Exec(ctx, `DELETE FROM ownership WHERE owner = $1`, owner); err != nil {
		return fmt.Errorf("replacing ownership of %q: %w", owner, err)
	}
	seen := map[string]bool{}
	for _, o := range own {
		if (o.Domain == "") == (o.Control == "") || (o.Control != "" && o.Version == "") {
			return &UserError{"ownership", "each assignment names either a domain or a version and control"}
		}
		if seen[o.Key()] {
			continue
		}
		seen[o.Key()] = true
		scopes := o.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO ownership (owner, domain, ccm_version, control_id, via, scopes, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			owner, o.Domain, o.Version, o.Control, o.Via, scopes, actor); err != nil {
			return fmt.Errorf("assigning %s to %q: %w", o.Key(), owner, err)
		}
	}
	return nil
}

// ListOwnership returns every owner's assignments, by owner.
func (s *Store) ListOwnership(ctx context.Context) (map[string][]Ownership, error) {
	return listOwnership(ctx, s.pool, "")
}

// listOwnership reads the assignments of owner, or of everyone for "".
func listOwnership(ctx context.Context, q DBTX, owner string) (map[string][]Ownership, error) {
	rows, _ := q.Query(ctx, `
		SELECT owner, domain, ccm_version, control_id, via, scopes FROM ownership
		WHERE $1 = '' OR owner = $1
		ORDER BY owner, domain = '', domain, ccm_version, control_id`, owner)
	out := map[string][]Ownership{}
	var name string
	var o Ownership
	_, err := pgx.ForEachRow(rows, []any{&name, &o.Domain, &o.Version, &o.Control, &o.Via, &o.Scopes}, func() error {
		if o.Scopes == nil {
			o.Scopes = []string{}
		}
		out[name] = append(out[name], Ownership{Domain: o.Domain, Version: o.Version, Control: o.Control, Via: o.Via, Scopes: slices.Clone(o.Scopes)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing ownership: %w", err)
	}
	return out, nil
}

// OwnsFinding reports whether user owns finding id: one of its control
// links falls in one of the user's assignments. An unknown finding is
// ErrNotFound.
func (s *Store) OwnsFinding(ctx context.Context, user string, id int64) (bool, error) {
	var exists, owns bool
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM findings WHERE id = $2),
		       EXISTS (SELECT 1 FROM finding_owners WHERE finding_id = $2 AND owner = $1)`, user, id).Scan(&exists, &owns)
	if err != nil {
		return false, fmt.Errorf("checking whether %q owns finding %d: %w", user, id, err)
	}
	if !exists {
		return false, fmt.Errorf("finding %d: %w", id, ErrNotFound)
	}
	return owns, nil
}

// newToken returns a fresh token and the hash stored for it.
func newToken() (string, []byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, fmt.Errorf("reading random bytes: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	return token, hashToken(token), nil
}
