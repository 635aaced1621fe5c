package api

import (
	"context"
	"io"

	"github.com/starpipe/starpipe/ingest/pipeline"
)

// Intake accepts an uploaded scan output: it stores the raw artifact and the
// run, and queues the run for parsing, all before answering.
// *pipeline.Intake implements it.
type Intake interface {
	Submit(ctx context.Context, r io.Reader, req pipeline.Request) (runID string, err error)
}
