package api

import (
	"encoding/json"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// The JSON shapes of the runs routes (openapi.yaml: Run). Wire types are
// built field by field from the store's values, so that a field added to a
// store struct is not published by accident and a store change cannot
// silently change the API.

// Run is a scan run as GET /v1/runs and GET /v1/runs/{id} show it.
type Run struct {
	ID             string            `json:"id"`
	ScheduleID     string            `json:"schedule_id,omitempty"`
	Kind           string            `json:"kind"`
	Scope          string            `json:"scope"`
	Tool           string            `json:"tool"`
	Format         string            `json:"format"`
	FileName       string            `json:"file_name,omitempty"` // as uploaded
	Status         finding.RunStatus `json:"status"`
	Error          string            `json:"error,omitempty"`
	ArtifactSHA256 string            `json:"artifact_sha256,omitempty"`
	Counts         RunCounts         `json:"counts"`
	Stats          json.RawMessage   `json:"stats,omitempty"` // parser statistics, as the consumer recorded them
	CreatedAt      time.Time         `json:"created_at"`
	StartedAt      *time.Time        `json:"started_at,omitempty"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
	CreatedBy      string            `json:"created_by,omitempty"`
}

// RunCounts says how far a run's results got.
type RunCounts struct {
	BatchesExpected *int `json:"batches_expected"` // null until the run-finished message arrives
	BatchesStored   int  `json:"batches_stored"`
	FindingsSeen    int  `json:"findings_seen"`
	// Observed counts the distinct findings the run saw, by severity; only
	// GET /v1/runs/{id} has it.
	Observed map[string]int `json:"observed,omitempty"`
}

// RunOf is the wire form of a stored run.
func RunOf(r store.Run) Run {
	return Run{
		ID: r.ID, ScheduleID: r.ScheduleID, Kind: r.Kind, Scope: r.Scope, Tool: r.Tool, Format: r.Format,
		FileName: r.FileName, Status: r.Status, Error: r.Error, ArtifactSHA256: r.ArtifactSHA256,
		Counts: RunCounts{
			BatchesExpected: r.Counts.BatchesExpected, BatchesStored: r.Counts.BatchesStored,
			FindingsSeen: r.Counts.FindingsSeen, Observed: r.Counts.Observed,
		},
		Stats: r.Stats, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, CreatedBy: r.CreatedBy,
	}
}

// RunAccepted answers POST /v1/runs: the run is stored and queued.
type RunAccepted struct {
	ID     string            `json:"id"`
	Status finding.RunStatus `json:"status"`
}
