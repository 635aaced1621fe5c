package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors callers classify on.
var (
	// ErrNotFound means the thing asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthenticated means a token is unknown, malformed or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrConflict means a unique name is already taken.
	ErrConflict = errors.New("already exists")
	// ErrCorrupt means stored content no longer matches its hash (or cannot
	// be decoded): reading it again will not help.
	ErrCorrupt = errors.New("stored content is corrupt")
)

// The SQLSTATE classes and codes the classification below relies on
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	classDataException       = "22" // 22P02 invalid text (a malformed uuid), 22021 NUL, 22001 too long
	classIntegrityConstraint = "23" // 23503 foreign key (a batch of an unknown run), 23505 unique
	classConnection          = "08"
	classInsufficientRes     = "53" // out of memory, disk full, too many connections
	codeUniqueViolation      = "23505"
	codeProgramLimit         = "54000" // a btree row over the index limit
	codeTooComplex           = "54001"
	codeTooManyColumns       = "54011"
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03"
	codeSerialization        = "40001"
	codeDeadlock             = "40P01"
)

// IsPermanent reports whether err is one the database will give again for
// the same input however often it is retried: a data exception (class 22:
// text that is no uuid, a NUL byte, a value too long), an integrity
// violation (class 23: a foreign key naming a run that does not exist; but
// not a unique violation, which a concurrent writer causes), a
// program limit (class 54: a key over the btree row limit), or content
// that no longer matches its hash. A consumer parks such a message rather
// than retry it; an API answers it as the client's fault.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrCorrupt) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch {
	case pe.Code == codeUniqueViolation:
		// What a concurrent writer of the same key causes (two batches
		// inserting one new finding): a retry finds the row and updates it.
		return false
	case strings.HasPrefix(pe.Code, classDataException),
		strings.HasPrefix(pe.Code, classIntegrityConstraint),
		pe.Code == codeProgramLimit, pe.Code == codeTooComplex, pe.Code == codeTooManyColumns:
		return true
	}
	return false
}

// IsInvalidData reports the part of IsPermanent that is the caller's
// input: a value the database refuses to store (class 22) or a key too big
// to index (54000). An API answers it 422.
func IsInvalidData(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (strings.HasPrefix(pe.Code, classDataException) || pe.Code == codeProgramLimit)
}

// IsUnavailable reports whether err means the database could not be
// reached or is not serving for now: a connection failure (class 08), a
// server shutting down or starting (57P01..57P03), exhausted resources
// (class 53), a transaction the server aborted to resolve a conflict
// (40001, 40P01), a network error or a dropped connection. Retrying later
// may succeed; an API answers 503.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// Whatever the server said (too many clients, the database not
		// accepting connections, starting up), no connection: an outage.
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, classConnection), strings.HasPrefix(pe.Code, classInsufficientRes),
			pe.Code == codeAdminShutdown, pe.Code == codeCrashShutdown, pe.Code == codeCannotConnectNow,
			pe.Code == codeSerialization, pe.Code == codeDeadlock:
			return true
		}
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, context.DeadlineExceeded),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	}
	// The pool answers a closed pool with a plain error; during shutdown
	// that is an outage of this process, not bad input.
	return strings.Contains(err.Error(), "closed pool")
}

// IsUndefinedTable reports an undefined_table error (42P01): the database
// has not been migrated to a schema this build knows.
func IsUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// isUniqueViolation reports a unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == codeUniqueViolation
}
