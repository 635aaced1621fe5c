// Package credentials resolves named scan credentials: it seals secrets
// with the vault before they reach the store and opens them again for the
// scan workers. It is the one place that joins store and vault (vault must
// not know about the database, and the store never sees a secret in
// clear), and what the API and the command line use to manage credentials.
//
// Secrets are sealed with vault.CredentialAAD(id) as additional
// authenticated data, so the row id is chosen here, before sealing, rather
// than by the database.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"

	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/vault"
)

// ErrExists is wrapped by Create when the name is taken.
var ErrExists = store.ErrConflict

// The parts of the store each function uses; *store.Store implements them
// all. Declared here, where they are used, so that callers and tests see
// what a function touches.

// Writer stores sealed credentials (Create, Save).
type Writer interface {
	CredentialID(ctx context.Context, name string) (string, error)
	PutCredential(ctx context.Context, rec store.CredentialRecord, actor string) (id string, created bool, err error)
}

// Reader reads a sealed credential (LoadCredential, Resolver).
type Reader interface {
	GetCredential(ctx context.Context, name string) (store.CredentialRecord, error)
}

// MetadataReader reads a credential without its secret (Scope,
// ScopeLookup).
type MetadataReader interface {
	CredentialMetadata(ctx context.Context, name string) (store.CredentialMeta, error)
}

// TargetSetter changes where a credential may be sent (SetTargets).
type TargetSetter interface {
	SetCredentialTargets(ctx context.Context, name string, targets []string, allowHTTP bool, actor string) error
}

// Rotator re-seals every credential in one transaction (Rotate).
type Rotator interface {
	RotateCredentials(ctx context.Context, actor string, fn func(id, sealed string) (newSealed, newKeyID string, err error)) (int, error)
}

// nameRE limits names to what fits in a URL path segment, a schedule file
// and a log line without quoting.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks c as vault.Credential.Validate does, the syntax of its
// name, and its targets, which every credential written from now on must
// have (vault.Scope.Validate). Errors are *vault.CredentialError and never
// hold the secret.
func Validate(c vault.Credential) error {
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		return &vault.CredentialError{Name: c.Name, Field: "name",
			Reason: "use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"}
	}
	if err := c.Validate(); err != nil {
		return err
	}
	return c.Scope().Validate(c.Name)
}

// seal validates c and seals its secret for the row id.
func seal(kr *vault.Keyring, id string, c vault.Credential) (store.CredentialRecord, error) {
	if err := Validate(c); err != nil {
		return store.CredentialRecord{}, err
	}
	s, err := kr.Seal(c.Secret, vault.CredentialAAD(id))
	if err != nil {
		return store.CredentialRecord{}, fmt.Errorf("sealing credential %q: %w", c.Name, err)
	}
	return store.CredentialRecord{
		ID: id, Name: c.Name, Kind: string(c.Kind), Username: c.Username, HeaderName: c.HeaderName,
		KeyID: s.KeyID, Sealed: s.String(), Targets: c.Targets, AllowHTTP: c.AllowHTTP,
	}, nil
}

// Create stores a new credential and returns its id. A taken name is an
// error wrapping ErrExists; an invalid credential is a
// *vault.CredentialError. c.ID is ignored.
func Create(ctx context.Context, st Writer, kr *vault.Keyring, c vault.Credential, actor string) (string, error) {
	rec, err := seal(kr, uuid.NewString(), c)
	if err != nil {
		return "", err
	}
	id, _, err := st.PutCredential(ctx, rec, actor)
	return id, err
}

// Save creates the credential or replaces the one with the same name,
// keeping its id, and reports whether it was created. c.ID is ignored.
func Save(ctx context.Context, st Writer, kr *vault.Keyring, c vault.Credential, actor string) (id string, created bool, err error) {
	if err := Validate(c); err != nil {
		return "", false, err
	}
	// The secret must be sealed for the id the row will have. A concurrent
	// create or delete of the same name between the look-up and the write
	// makes PutCredential refuse with ErrConflict; look up again and retry.
	for attempt := 1; ; attempt++ {
		id, err := st.CredentialID(ctx, c.Name)
		if errors.Is(err, store.ErrNotFound) {
			id = uuid.NewString()
		} else if err != nil {
			return "", false, err
		}
		rec, err := seal(kr, id, c)
		if err != nil {
			return "", false, err
		}
		id, created, err = st.PutCredential(ctx, rec, actor)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		return id, created, err
	}
}

// LoadCredential returns the named credential with its secret in clear,
// for a scan worker about to present it. Unknown names wrap
// store.ErrNotFound; a ciphertext that fails authentication (altered, or
// copied from another row) wraps vault.ErrAuth; one sealed with a key kr
// lacks is a *vault.UnknownKeyError. The result is validated again, so
// that an altered username or header name cannot inject headers.
func LoadCredential(ctx context.Context, st Reader, kr *vault.Keyring, name string) (vault.Credential, error) {
	rec, err := st.GetCredential(ctx, name)
	if err != nil {
		return vault.Credential{}, err
	}
	s, err := vault.ParseSealed(rec.Sealed)
	if err != nil {
		return vault.Credential{}, fmt.Errorf("credential %q: %w", name, err)
	}
	pt, err := kr.Open(s, vault.CredentialAAD(rec.ID))
	if err != nil {
		return vault.Credential{}, fmt.Errorf("opening credential %q: %w", name, err)
	}
	c := vault.Credential{
		ID: rec.ID, Name: rec.Name, Kind: vault.CredentialKind(rec.Kind),
		Username: rec.Username, HeaderName: rec.HeaderName, Secret: vault.Secret(pt),
		Targets: rec.Targets, AllowHTTP: rec.AllowHTTP,
	}
	// Targets are not required here: a credential stored before they
	// existed still loads, and its empty scope permits nothing
	// (vault.ErrNoTargets), which the scan reports.
	if err := c.Validate(); err != nil {
		return vault.Credential{}, fmt.Errorf("stored credential is invalid: %w", err)
	}
	return c, nil
}

// Resolver opens named credentials for scan workers, which declare the
// interface they need (a method Credential(ctx, name)) rather than
// importing store.
type Resolver struct {
	st Reader
	kr *vault.Keyring
}

// NewResolver returns a Resolver over st and kr.
func NewResolver(st Reader, kr *vault.Keyring) *Resolver { return &Resolver{st: st, kr: kr} }

// Scope returns where the named credential may be sent (see
// Resolver.CredentialScope).
func Scope(ctx context.Context, st MetadataReader, name string) (vault.Scope, error) {
	m, err := st.CredentialMetadata(ctx, name)
	if err != nil {
		return vault.Scope{}, err
	}
	return vault.Scope{Targets: m.Targets, AllowHTTP: m.AllowHTTP}, nil
}

// ScopeLookup adapts a store to schedule validation's credential look-up
// without a keyring (the API process may run without one).
type ScopeLookup struct{ St MetadataReader }

// CredentialScope is Scope, with an unknown name also wrapping
// spec.ErrUnknownCredential.
func (l ScopeLookup) CredentialScope(ctx context.Context, name string) (vault.Scope, error) {
	sc, err := Scope(ctx, l.St, name)
	if errors.Is(err, store.ErrNotFound) {
		return sc, fmt.Errorf("%w: %w", spec.ErrUnknownCredential, err)
	}
	return sc, err
}

// SetTargets validates and stores where the named credential may be sent,
// leaving its secret untouched: the way for an admin to make a credential
// stored before targets existed usable again.
func SetTargets(ctx context.Context, st TargetSetter, name string, sc vault.Scope, actor string) error {
	if err := sc.Validate(name); err != nil {
		return err
	}
	return st.SetCredentialTargets(ctx, name, sc.Targets, sc.AllowHTTP, actor)
}

// Credential is LoadCredential.
func (r *Resolver) Credential(ctx context.Context, name string) (vault.Credential, error) {
	return LoadCredential(ctx, r.st, r.kr, name)
}

// Rotate re-encrypts every credential not yet under kr's current key with
// that key, in one transaction, and returns how many it changed. kr must
// also hold every key the rows are sealed with; on any error nothing is
// changed. Once it returns without error the old keys are no longer needed.
func Rotate(ctx context.Context, st Rotator, kr *vault.Keyring, actor string) (int, error) {
	return vault.RotateAll(ctx, rotationSource{st: st, actor: actor}, kr)
}

// rotationSource adapts the store's string-typed rotation to
// vault.RotationSource.
type rotationSource struct {
	st    Rotator
	actor string
}

func (r rotationSource) Each(ctx context.Context, fn func(id string, s vault.Sealed) (vault.Sealed, error)) error {
	_, err := r.st.RotateCredentials(ctx, r.actor, func(id, sealed string) (string, string, error) {
		s, err := vault.ParseSealed(sealed)
		if err != nil {
			return "", "", fmt.Errorf("credential %s: %w", id, err)
		}
		next, err := fn(id, s)
		if err != nil {
			return "", "", err
		}
		if next.KeyID == s.KeyID {
			return sealed, s.KeyID, nil // already under the current key: not written
		}
		return next.String(), next.KeyID, nil
	})
	return err
}
