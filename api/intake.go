package api

import (
	"context"
	"io"
)

// Intake accepts an uploaded scan output: it stores the raw artifact and the
// run, and queues the run for parsing, all before answering.
type Intake interface {
	Submit(ctx context.Context, r io.Reader, req SubmitRequest) (runID string, err error)
}

// SubmitRequest describes an upload.
type SubmitRequest struct {
	Kind       string // external, authenticated, code
	Scope      string
	Format     string // auto, sarif, nuclei, amass
	ScheduleID string
	Actor      string // the principal's name
	FileName   string
}
