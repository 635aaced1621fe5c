package api

import (
	"context"
	"io"
	"time"

	"github.com/starpipe/starpipe/activity"
	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/store"
)

// Store is what the /v1 routes read and write; *store.Store implements it.
// It is declared here, where it is used, so that the API's reach into the
// database is listed in one place; a route that needs more adds the
// method here.
type Store interface {
	// Runs, findings and controls (read.go).
	GetRun(ctx context.Context, id string) (store.Run, error)
	ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error)
	GetFinding(ctx context.Context, id int64) (store.FindingDetail, error)
	ListFindings(ctx context.Context, f store.FindingFilter) ([]store.FindingRow, string, error)
	StreamFindings(ctx context.Context, f store.FindingFilter, fn func(store.FindingRow) error) error
	ControlSummary(ctx context.Context, ccmVersion string) ([]store.ControlCount, error)

	// Schedules and their ledger (schedules.go).
	ListSchedules(ctx context.Context) ([]store.Schedule, error)
	GetSchedule(ctx context.Context, name string) (store.Schedule, error)
	CreateSchedule(ctx context.Context, sc store.Schedule, actor string) error
	UpdateSchedule(ctx context.Context, sc store.Schedule, actor string) error
	DeleteSchedule(ctx context.Context, name, actor string) error
	ListLedger(ctx context.Context, schedule string, from, to time.Time) ([]store.LedgerEntry, error)

	// Credentials (credentials.go); sealing goes through package
	// credentials.
	credentials.Writer
	credentials.MetadataReader
	ListCredentials(ctx context.Context) ([]store.CredentialMeta, error)
	DeleteCredential(ctx context.Context, name, actor string) error

	// The hash-chained activity log (activity.go).
	ListActivity(ctx context.Context, f store.ActivityFilter) ([]store.ActivityEntry, string, error)
	StreamActivity(ctx context.Context, f store.ActivityFilter, fn func(store.ActivityEntry) error) error
	activity.ExportSource

	// Users, ownership and review decisions (users.go, review.go); the
	// decisions themselves go through package review.
	review.Store
	review.OwnershipStore
	CreateUser(ctx context.Context, tx *store.Tx, actor string, u store.NewUser, own []store.Ownership) (store.User, error)
	CreateUserToken(ctx context.Context, actor, user, tokenName string) (string, error)
	DisableUser(ctx context.Context, actor, name string) error
	GetUser(ctx context.Context, name string) (store.User, error)
	ListUsers(ctx context.Context) ([]store.User, error)
	ListOwnership(ctx context.Context) (map[string][]store.Ownership, error)
	GetReview(ctx context.Context, id int64) (store.Review, error)
	SLAPolicies(ctx context.Context) ([]store.SLAPolicy, error)
	SLAPolicyAt(ctx context.Context, t time.Time) (store.SLAPolicy, error)

	// The exceptions register (exceptions.go); changes go through package
	// review.
	GetException(ctx context.Context, id int64) (store.Exception, error)
	ListExceptions(ctx context.Context, f store.ExceptionFilter) ([]store.Exception, error)
	// Manual findings, notes and retests (manual.go); the changes go
	// through package review.
	review.FindingsStore
	StageArtifact(ctx context.Context, r io.Reader, limit int64) (*store.StagedArtifact, error)
	DiscardArtifact(ctx context.Context, st *store.StagedArtifact)
	ListNotes(ctx context.Context, id int64) ([]store.Note, error)

	// Tokens (tokens.go).
	IssueToken(ctx context.Context, spec store.TokenSpec, actor string) (string, error)
	ListTokens(ctx context.Context) ([]store.TokenInfo, error)
	RevokeToken(ctx context.Context, name, actor string) error
}
