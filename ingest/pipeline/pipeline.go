// Package pipeline is the spine between an upload and the findings tables:
// intake stores the raw artifact and the run and queues it through the
// outbox; the consumer parses the artifact into batches on
// starpipe.scan.results, scores, maps and upserts each batch idempotently,
// and reconciles a scope when a successful run completes.
package pipeline

import (
	"fmt"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/sanitize"
	"github.com/starpipe/starpipe/scoring"
)

// Request describes scan output handed to Submit.
type Request struct {
	Kind       string // external, authenticated, code; empty: by format (sarif → code, else external)
	Scope      string // what was scanned; required
	Format     string // auto, sarif, nuclei, amass
	ScheduleID string
	Actor      string
	FileName   string
	// Environment is a CVSS environmental fragment ("CR:H/IR:H/MAV:A")
	// applied when scoring this run's findings; a schedule sets it.
	Environment string
}

// RequestError is a problem with what the caller sent (HTTP 4xx).
type RequestError struct {
	Status int // suggested HTTP status
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

// HTTPStatus lets the API answer with the right status without knowing
// this package.
func (e *RequestError) HTTPStatus() int { return e.Status }

// normalise validates a request and fills defaults once the format is known.
func (r *Request) normalise(format ingest.Format) error {
	r.Scope = strings.TrimSpace(r.Scope)
	if r.Scope == "" {
		return &RequestError{Status: 400, Msg: "scope is required: what was scanned (a host, a URL base or a repository); reconciliation closes findings per scope"}
	}
	if len(r.Scope) > 2048 {
		return &RequestError{Status: 400, Msg: "scope is longer than 2048 bytes"}
	}
	// The scope keys findings: refused rather than changed, so that a
	// finding's scope is always its run's.
	if !sanitize.Valid(r.Scope) {
		return &RequestError{Status: 400, Msg: "scope must be UTF-8 text without NUL characters"}
	}
	// The file name only names the run: made storable.
	r.FileName = sanitize.Text(r.FileName, maxFileName)
	if r.Kind == "" {
		r.Kind = string(finding.KindExternal)
		if format == ingest.FormatSARIF {
			r.Kind = string(finding.KindCode)
		}
	}
	if _, err := finding.ParseScanKind(r.Kind); err != nil {
		return &RequestError{Status: 400, Msg: err.Error()}
	}
	if r.Environment != "" {
		if _, err := scoring.ParseEnvironment(r.Environment); err != nil {
			return &RequestError{Status: 400, Msg: "environment: " + err.Error()}
		}
	}
	return nil
}

// toolOf names the scanner a format implies before parsing; SARIF names
// its tools itself and the parse stage records them.
func toolOf(format ingest.Format) string {
	switch format {
	case ingest.FormatNuclei:
		return "nuclei"
	case ingest.FormatAmass:
		return "amass"
	}
	return string(format)
}

// maxFileName bounds an upload's file name as stored.
const maxFileName = 1024

func tooLarge(limit int64) error {
	return &RequestError{Status: 413, Msg: fmt.Sprintf("file too large: the limit is %d bytes (ingest.max_bytes)", limit)}
}
