package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// CredentialRecord is a credentials row as the vault glue writes and reads
// it. Sealed is the vault's storage form of the encrypted secret; the store
// never sees the secret in clear and does not interpret Sealed.
type CredentialRecord struct {
	// ID is chosen by the caller before sealing, because the ciphertext is
	// bound to it (vault.CredentialAAD).
	ID         string
	Name       string
	Kind       string // bearer, basic, header, cookie
	Username   string // basic only
	HeaderName string // header only
	KeyID      string // id of the master key that sealed Sealed
	Sealed     string
	// Targets are the URL prefixes the credential may be sent to; empty
	// for rows stored before targets existed (sent nowhere).
	Targets   []string
	AllowHTTP bool
}

// CredentialMeta is what may be shown about a credential: everything but
// the sealed secret (api.CredentialView is its JSON shape).
type CredentialMeta struct {
	ID         string
	Name       string
	Kind       string
	Username   string
	HeaderName string
	KeyID      string
	Targets    []string
	AllowHTTP  bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
	CreatedBy  string
	RotatedAt  *time.Time
}

// credentialAudit is the activity-log view of a credential. It is built
// from explicit fields (not from a record) so that the sealed value, and
// anything added to records later, cannot reach the log by accident.
type credentialAudit struct {
	Name      string   `json:"name"`
	Kind      string   `json:"kind"`
	KeyID     string   `json:"key_id"`
	Targets   []string `json:"targets"`
	AllowHTTP bool     `json:"allow_http"`
}

// PutCredential inserts rec, or replaces the credential of the same name,
// and records who did it in the activity log, in one transaction. It
// returns the row id and whether the row is new.
//
// Replacing keeps the row's id, so rec.ID must be that id (the secret was
// sealed for it): when the name exists under another id, PutCredential
// changes nothing and returns an error wrapping ErrConflict. That is also
// what a create-only caller gets for a taken name, and what a caller that
// looked up the id gets when it raced another writer; it may look up the id
// again, reseal and retry.
func (s *Store) PutCredential(ctx context.Context, rec CredentialRecord, actor string) (id string, created bool, err error) {
	if rec.ID == "" || rec.Name == "" || rec.KeyID == "" || rec.Sealed == "" || actor == "" {
		return "", false, fmt.Errorf("storing credential %q: id, name, key id, sealed value and actor are required", rec.Name)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var before *credentialAudit
		var old credentialAudit
		err := tx.QueryRow(ctx, `SELECT name, kind, key_id, targets, allow_http FROM credentials WHERE name = $1 FOR UPDATE`, rec.Name).
			Scan(&old.Name, &old.Kind, &old.KeyID, &old.Targets, &old.AllowHTTP)
		switch {
		case err == nil:
			before = &old
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		// The WHERE on the conflict branch refuses to attach a secret sealed
		// for one id to a row with another: it would never open again.
		err = tx.QueryRow(ctx, `
			INSERT INTO credentials (id, name, kind, username, header_name, key_id, sealed, created_by, targets, allow_http)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (name) DO UPDATE SET
				kind = excluded.kind, username = excluded.username, header_name = excluded.header_name,
				key_id = excluded.key_id, sealed = excluded.sealed, targets = excluded.targets,
				allow_http = excluded.allow_http, updated_at = now()
			WHERE credentials.id = excluded.id
			RETURNING id::text, xmax = 0`,
			rec.ID, rec.Name, rec.Kind, rec.Username, rec.HeaderName, rec.KeyID, rec.Sealed, actor,
			nonNil(rec.Targets), rec.AllowHTTP).Scan(&id, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrConflict
		}
		if isUniqueViolation(err) { // the id is taken by another name
			return ErrConflict
		}
		if err != nil {
			return err
		}
		action := "credential.updated"
		if created {
			action = "credential.created"
		}
		a := Activity{Actor: actor, Action: action, SubjectType: "credential", SubjectID: id,
			After: credentialAudit{Name: rec.Name, Kind: rec.Kind, KeyID: rec.KeyID, Targets: nonNil(rec.Targets), AllowHTTP: rec.AllowHTTP}}
		if before != nil {
			a.Before = before
		}
		_, err = s.appendActivity(ctx, tx, a)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("storing credential %q: %w", rec.Name, err)
	}
	return id, created, nil
}

// GetCredential returns the named credential with its sealed secret, for
// the code that decrypts it. An unknown name is ErrNotFound.
func (s *Store) GetCredential(ctx context.Context, name string) (CredentialRecord, error) {
	var r CredentialRecord
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, name, kind, username, header_name, key_id, sealed, targets, allow_http
		FROM credentials WHERE name = $1`, name).
		Scan(&r.ID, &r.Name, &r.Kind, &r.Username, &r.HeaderName, &r.KeyID, &r.Sealed, &r.Targets, &r.AllowHTTP)
	if errors.Is(err, pgx.ErrNoRows) {
		return CredentialRecord{}, fmt.Errorf("credential %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return CredentialRecord{}, fmt.Errorf("reading credential %q: %w", name, err)
	}
	return r, nil
}

// CredentialID returns the id of the named credential, or ErrNotFound.
func (s *Store) CredentialID(ctx context.Context, name string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id::text FROM credentials WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("credential %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("looking up credential %q: %w", name, err)
	}
	return id, nil
}

const credentialMetaColumns = `id::text, name, kind, username, header_name, key_id, targets, allow_http, created_at, updated_at, created_by, rotated_at`

func scanCredentialMeta(row pgx.Row) (CredentialMeta, error) {
	var m CredentialMeta
	err := row.Scan(&m.ID, &m.Name, &m.Kind, &m.Username, &m.HeaderName, &m.KeyID, &m.Targets, &m.AllowHTTP, &m.CreatedAt, &m.UpdatedAt, &m.CreatedBy, &m.RotatedAt)
	return m, err
}

// SetCredentialTargets replaces where the named credential may be sent,
// leaving its secret as it is, and logs the change. It is for admins (the
// command line, which holds the database): it is how credentials stored
// before targets existed become usable again. An unknown name is
// ErrNotFound.
func (s *Store) SetCredentialTargets(ctx context.Context, name string, targets []string, allowHTTP bool, actor string) error {
	if actor == "" {
		return fmt.Errorf("setting targets of credential %q: actor is required", name)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id string
		var before credentialAudit
		err := tx.QueryRow(ctx, `SELECT id::text, name, kind, key_id, targets, allow_http FROM credentials WHERE name = $1 FOR UPDATE`, name).
			Scan(&id, &before.Name, &before.Kind, &before.KeyID, &before.Targets, &before.AllowHTTP)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE credentials SET targets = $2, allow_http = $3, updated_at = now() WHERE id = $1`,
			id, nonNil(targets), allowHTTP); err != nil {
			return err
		}
		after := before
		after.Targets, after.AllowHTTP = nonNil(targets), allowHTTP
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "credential.targets_set",
			SubjectType: "credential", SubjectID: id, Before: before, After: after})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting targets of credential %q: %w", name, err)
	}
	return nil
}

// CredentialMetadata returns what may be shown about the named credential,
// or ErrNotFound.
func (s *Store) CredentialMetadata(ctx context.Context, name string) (CredentialMeta, error) {
	m, err := scanCredentialMeta(s.pool.QueryRow(ctx, `SELECT `+credentialMetaColumns+` FROM credentials WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return CredentialMeta{}, fmt.Errorf("credential %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return CredentialMeta{}, fmt.Errorf("reading credential %q: %w", name, err)
	}
	return m, nil
}

// ListCredentials returns every credential's metadata, by name. The sealed
// secrets are not even selected.
func (s *Store) ListCredentials(ctx context.Context) ([]CredentialMeta, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+credentialMetaColumns+` FROM credentials ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	defer rows.Close()
	out := []CredentialMeta{}
	for rows.Next() {
		m, err := scanCredentialMeta(rows)
		if err != nil {
			return nil, fmt.Errorf("listing credentials: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	return out, nil
}

// DeleteCredential removes the named credential and logs it, in one
// transaction. An unknown name is ErrNotFound.
func (s *Store) DeleteCredential(ctx context.Context, name, actor string) error {
	if actor == "" {
		return fmt.Errorf("deleting credential %q: actor is required", name)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id string
		var before credentialAudit
		err := tx.QueryRow(ctx, `DELETE FROM credentials WHERE name = $1 RETURNING id::text, name, kind, key_id, targets, allow_http`, name).
			Scan(&id, &before.Name, &before.Kind, &before.KeyID, &before.Targets, &before.AllowHTTP)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "credential.deleted",
			SubjectType: "credential", SubjectID: id, Before: before})
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting credential %q: %w", name, err)
	}
	return nil
}

// RotateCredentials passes every credential's id and sealed value to fn, in
// name order, and stores the sealed value and key id fn returns. It returns
// how many rows changed; a row for which fn returns its input unchanged is
// not written.
//
// Everything happens in one transaction that first takes an EXCLUSIVE lock
// on the table: readers carry on, but no credential can be written between
// the read and the commit and so escape the rotation. fn's first error, or
// any other, rolls the whole rotation back, leaving every row as it was and
// so readable with the keys that read it. With at least one row changed, an
// activity entry by actor records the rotation (key ids and count only).
func (s *Store) RotateCredentials(ctx context.Context, actor string, fn func(id, sealed string) (newSealed, newKeyID string, err error)) (n int, err error) {
	if actor == "" {
		return 0, errors.New("rotating credentials: actor is required")
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		if _, err := tx.Exec(ctx, `LOCK TABLE credentials IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		type row struct{ id, sealed string }
		rows, err := tx.Query(ctx, `SELECT id::text, sealed FROM credentials ORDER BY name`)
		if err != nil {
			return err
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.sealed)
			return x, err
		})
		if err != nil {
			return err
		}
		keyIDs := map[string]bool{}
		for _, r := range all {
			sealed, keyID, err := fn(r.id, r.sealed)
			if err != nil {
				return err
			}
			if sealed == r.sealed {
				continue
			}
			if _, err := tx.Exec(ctx, `
				UPDATE credentials SET sealed = $2, key_id = $3, rotated_at = now(), updated_at = now()
				WHERE id = $1`, r.id, sealed, keyID); err != nil {
				return fmt.Errorf("updating credential %s: %w", r.id, err)
			}
			keyIDs[keyID] = true
			n++
		}
		if n == 0 {
			return nil
		}
		ids := make([]string, 0, len(keyIDs))
		for k := range keyIDs {
			ids = append(ids, k)
		}
		slices.Sort(ids)
		_, err = s.appendActivity(ctx, tx, Activity{Actor: actor, Action: "credentials.rotated",
			SubjectType: "credential", SubjectID: "*",
			After: map[string]any{"rotated": n, "key_ids": ids}})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rotating credentials: %w", err)
	}
	return n, nil
}
