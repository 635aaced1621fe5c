// Package pipeline is the spine between an upload and the findings tables:
// intake stores the raw artifact and the run and queues it through the
// outbox; the consumer parses the artifact into batches on
// starpipe.scan.results, scores, maps and upserts each batch idempotently,
// and reconciles a scope when a successful run completes.
package pipeline

import (
	"errors"
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

// The kinds of RequestError, for errors.Is: the API answers each with its
// own status, this package knows no HTTP.
var (
	// ErrInvalidRequest: a field of the request is missing or wrong.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrTooLarge: the upload is over the configured limit.
	ErrTooLarge = errors.New("upload too large")
	// ErrUnsupportedFormat: the file is not in a format starpipe reads.
	ErrUnsupportedFormat = errors.New("unsupported format")
	// ErrIntakeClosed: this process stopped taking uploads (it is shutting
	// down); another replica, or this one after a restart, will.
	ErrIntakeClosed = errors.New("the daemon is shutting down; retry against another replica")
)

// RequestError is a problem with what the caller sent. Kind is one of
// ErrInvalidRequest, ErrTooLarge and ErrUnsupportedFormat; Msg says what to
// change.
type RequestError struct {
	Kind error
	Msg  string
}

func (e *RequestError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, ErrTooLarge) and the like work.
func (e *RequestError) Unwrap() error { return e.Kind }

func invalidRequest(msg string) error { return &RequestError{Kind: ErrInvalidRequest, Msg: msg} }

// normalise validates a request and fills defaults once the format is known.
func (r *Request) normalise(format ingest.Format) error {
	r.Scope = strings.TrimSpace(r.Scope)
	if r.Scope == "" {
		return invalidRequest("scope is required: what was scanned (a host, a URL base or a repository); reconciliation closes findings per scope")
	}
	if len(r.Scope) > 2048 {
		return invalidRequest("scope is longer than 2048 bytes")
	}
	// The scope keys findings: refused rather than changed, so that a
	// finding's scope is always its run's.
	if !sanitize.Valid(r.Scope) {
		return invalidRequest("scope must be UTF-8 text without NUL characters")
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
		return invalidRequest(err.Error())
	}
	if r.Environment != "" {
		if _, err := scoring.ParseEnvironment(r.Environment); err != nil {
			return invalidRequest("environment: " + err.Error())
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
	return &RequestError{Kind: ErrTooLarge, Msg: fmt.Sprintf("file too large: the limit is %d bytes (ingest.max_bytes)", limit)}
}
