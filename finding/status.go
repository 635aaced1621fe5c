package finding

import "slices"

// Every status starpipe stores or shows is a typed constant here, so that
// store, scheduler, worker, ingest and api compare and write the same values
// and a typo is a compile error rather than a silently unmatched string.
// The database's CHECK constraints list the same values (migrations 00001
// and 00002); SQL text keeps its own literals.

// Status is where a finding is in its lifecycle.
type Status string

// Finding statuses, as stored in findings.status and shown by the API.
const (
	StatusOpen          Status = "open"
	StatusResolved      Status = "resolved"
	StatusReopened      Status = "reopened"
	StatusAccepted      Status = "accepted"
	StatusFalsePositive Status = "false_positive"
)

// ParseStatus validates a status given by a user.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusOpen, StatusResolved, StatusReopened, StatusAccepted, StatusFalsePositive:
		return st, nil
	}
	return "", &ValueError{Field: "status", Value: s, Allowed: "open, resolved, reopened, accepted, false_positive"}
}

// Active reports whether the status counts as an unresolved finding.
func (s Status) Active() bool { return s == StatusOpen || s == StatusReopened }

// RunStatus is where a scan run is in the pipeline: received (stored, its
// message in the outbox), queued (the message reached Kafka), processing
// (the parse stage started it), then succeeded or failed. A run whose
// reconciliation would close too much of its scope at once is held instead
// (its observations stored, nothing resolved) until a person releases it
// (then succeeded) or discards it (then discarded).
type RunStatus string

// Run statuses, as stored in scan_runs.status and shown by the API.
const (
	RunReceived   RunStatus = "received"
	RunQueued     RunStatus = "queued"
	RunProcessing RunStatus = "processing"
	RunSucceeded  RunStatus = "succeeded"
	RunFailed     RunStatus = "failed"
	// RunHeld: every batch is stored but the resolutions wait for a
	// person (POST /v1/runs/{id}/release or /discard).
	RunHeld RunStatus = "held"
	// RunDiscarded: a held run whose resolutions were dropped; its own
	// observations stay, it resolved nothing.
	RunDiscarded RunStatus = "discarded"
)

var runStatuses = []RunStatus{RunReceived, RunQueued, RunProcessing, RunSucceeded, RunFailed, RunHeld, RunDiscarded}

// RunStatuses lists every run status in lifecycle order.
func RunStatuses() []RunStatus { return slices.Clone(runStatuses) }

// ParseRunStatus validates a run status given by a user.
func ParseRunStatus(s string) (RunStatus, error) {
	if st := RunStatus(s); slices.Contains(runStatuses, st) {
		return st, nil
	}
	return "", &ValueError{Field: "status", Value: s, Allowed: "received, queued, processing, succeeded, failed, held, discarded"}
}

// Finished reports whether the pipeline is done with the run: nothing more
// is stored for it and a replayed message changes nothing. A held run is
// finished for the pipeline; only a person's release or discard moves it.
func (s RunStatus) Finished() bool {
	return s == RunSucceeded || s == RunFailed || s == RunHeld || s == RunDiscarded
}

// LedgerStatus is the outcome of one due time of a schedule in the run
// ledger. A due time's row is created pending (the scan request is
// queued), skipped (an earlier run of the schedule was still pending or
// running) or missed (no scheduler was leading when it came due); the scan
// worker moves a pending row to running and then to succeeded or failed,
// and the scheduler fails a row that stayed pending or running too long
// (abandoned).
type LedgerStatus string

// Ledger statuses, as stored in schedule_ledger.status and shown by the
// API and `starpipe schedules ledger`.
const (
	LedgerPending   LedgerStatus = "pending"
	LedgerRunning   LedgerStatus = "running"
	LedgerSucceeded LedgerStatus = "succeeded"
	LedgerFailed    LedgerStatus = "failed"
	LedgerSkipped   LedgerStatus = "skipped"
	LedgerMissed    LedgerStatus = "missed"
)

var ledgerStatuses = []LedgerStatus{LedgerPending, LedgerRunning, LedgerSucceeded, LedgerFailed, LedgerSkipped, LedgerMissed}

// LedgerStatuses lists every ledger status.
func LedgerStatuses() []LedgerStatus { return slices.Clone(ledgerStatuses) }

// Unfinished reports whether a ledger row still waits for its scan: a
// later due time of the same schedule would overlap it.
func (s LedgerStatus) Unfinished() bool { return s == LedgerPending || s == LedgerRunning }
