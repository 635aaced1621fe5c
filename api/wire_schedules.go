package api

import (
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

// The JSON shapes of the schedules routes (openapi.yaml: ScheduleView,
// LedgerEntry, LedgerRun). The definition itself is spec.Schedule, the
// document POST and PUT take, so that a client can GET, edit .schedule and
// PUT it back.

// ScheduleView is a schedule as the API shows it: the definition exactly
// as POST and PUT take it, and its state beside it.
type ScheduleView struct {
	Schedule spec.Schedule  `json:"schedule"`
	Status   ScheduleStatus `json:"status"`
}

// ScheduleStatus is a schedule's state.
type ScheduleStatus struct {
	Enabled bool `json:"enabled"`
	// NextDue is absent when the schedule is disabled.
	NextDue      time.Time            `json:"next_due,omitzero"`
	LastFiredDue time.Time            `json:"last_fired_due,omitzero"`
	LastStatus   finding.LedgerStatus `json:"last_status,omitempty"`
	LastDue      time.Time            `json:"last_due,omitzero"`
	ActiveSince  time.Time            `json:"active_since"`
	CreatedAt    time.Time            `json:"created_at"`
	UpdatedAt    time.Time            `json:"updated_at"`
	UpdatedBy    string               `json:"updated_by"`
}

// ScheduleList is the answer of GET /v1/schedules.
type ScheduleList struct {
	Schedules []ScheduleView `json:"schedules"`
}

// ScheduleViewOf is the wire form of a stored schedule, with its next due
// time after now.
func ScheduleViewOf(sc store.Schedule, now time.Time) (ScheduleView, error) {
	sp, err := sc.Definition()
	if err != nil {
		return ScheduleView{}, err
	}
	next, err := sc.NextDue(now)
	if err != nil {
		return ScheduleView{}, err
	}
	return ScheduleView{Schedule: sp, Status: ScheduleStatus{
		Enabled: sc.Enabled, NextDue: next, LastFiredDue: sc.LastFiredDue, LastStatus: sc.LastStatus,
		LastDue: sc.LastDue, ActiveSince: sc.ActiveSince, CreatedAt: sc.CreatedAt, UpdatedAt: sc.UpdatedAt,
		UpdatedBy: sc.UpdatedBy,
	}}, nil
}

// Ledger is the answer of GET /v1/schedules/{name}/ledger: the rows whose
// due time is in [from, to); to is absent when open. (Fields in
// alphabetical order: the answer was a map, and its bytes stay the same.)
type Ledger struct {
	Entries  []LedgerEntry `json:"entries"`
	From     time.Time     `json:"from"`
	Schedule string        `json:"schedule"`
	To       time.Time     `json:"to,omitzero"`
}

// LedgerEntry is one due time of a schedule in the run ledger.
type LedgerEntry struct {
	ID       int64                `json:"id"`
	Schedule string               `json:"schedule"`
	Due      time.Time            `json:"due"`
	Status   finding.LedgerStatus `json:"status"`
	CatchUp  bool                 `json:"catch_up"`
	// RunID is the first run of the due time (Runs[0]), kept for clients
	// of the single-run ledger.
	RunID string `json:"run_id,omitempty"`
	// Runs are every scan run the due time produced, in creation order.
	Runs       []LedgerRun `json:"runs"`
	ClaimedAt  time.Time   `json:"claimed_at"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	Error      string      `json:"error,omitempty"`
}

// LedgerRun is one scan run of a due time, with its status in the ingest
// pipeline.
type LedgerRun struct {
	ID     string            `json:"id"`
	Scope  string            `json:"scope"`
	Tool   string            `json:"tool"`
	Status finding.RunStatus `json:"status"`
	Error  string            `json:"error,omitempty"`
}

// LedgerEntryOf is the wire form of a ledger row.
func LedgerEntryOf(e store.LedgerEntry) LedgerEntry {
	out := LedgerEntry{
		ID: e.ID, Schedule: e.Schedule, Due: e.Due, Status: e.Status, CatchUp: e.CatchUp, RunID: e.RunID,
		Runs: make([]LedgerRun, len(e.Runs)), ClaimedAt: e.ClaimedAt, StartedAt: e.StartedAt,
		FinishedAt: e.FinishedAt, Error: e.Error,
	}
	for i, r := range e.Runs {
		out.Runs[i] = LedgerRun{ID: r.ID, Scope: r.Scope, Tool: r.Tool, Status: r.Status, Error: r.Error}
	}
	return out
}

// LedgerEntriesOf converts ledger rows; never nil, so that an empty
// ledger encodes as [].
func LedgerEntriesOf(es []store.LedgerEntry) []LedgerEntry {
	out := make([]LedgerEntry, len(es))
	for i, e := range es {
		out[i] = LedgerEntryOf(e)
	}
	return out
}
