package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/google/uuid"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/store"
)

// Intake accepts scan output. Nothing is published directly: the artifact,
// the run and an outbox row commit in one transaction, and the relay
// delivers the row, so an upload succeeds while the broker is down.
type Intake struct {
	st       *store.Store
	maxBytes int64
	tmpDir   string
	log      *slog.Logger
}

// NewIntake builds an intake. maxBytes bounds one upload; tmpDir holds the
// spooled upload while it is sniffed and stored ("" for the system's).
func NewIntake(st *store.Store, maxBytes int64, tmpDir string, log *slog.Logger) *Intake {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Intake{st: st, maxBytes: maxBytes, tmpDir: tmpDir, log: log.With("component", "intake")}
}

// Submit stores r as a new run and queues it; it returns the run id.
func (in *Intake) Submit(ctx context.Context, r io.Reader, req Request) (string, error) {
	if req.Format == "" {
		req.Format = string(ingest.FormatAuto)
	}
	format, err := ingest.ParseFormat(req.Format)
	if err != nil {
		return "", invalidRequest(err.Error())
	}
	// Spool to disk first: the body is read once, its size is bounded, and
	// format detection and the artifact store read the same bytes.
	f, err := os.CreateTemp(in.tmpDir, "starpipe-upload-*")
	if err != nil {
		return "", fmt.Errorf("spooling upload: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r, in.maxBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading upload: %w", err)
	}
	if n > in.maxBytes {
		return "", tooLarge(in.maxBytes)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewinding upload: %w", err)
	}
	if format == ingest.FormatAuto {
		prefix, _ := bufio.NewReaderSize(f, 64<<10).Peek(64 << 10)
		if format, err = ingest.Detect(prefix); err != nil {
			if pe, ok := errors.AsType[*parse.Error](err); ok {
				pe.File = req.FileName
				if pe.File == "" {
					pe.File = "upload"
				}
			}
			return "", &RequestError{Kind: ErrUnsupportedFormat, Msg: err.Error()}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", fmt.Errorf("rewinding upload: %w", err)
		}
	}
	if err := req.normalise(format); err != nil {
		return "", err
	}
	runID := uuid.NewString()
	msg, err := bus.Encode(bus.TypeRunReceived, RunReceived{RunID: runID})
	if err != nil {
		return "", err
	}
	err = in.st.InTx(ctx, func(tx *store.Tx) error {
		sha, err := in.st.PutArtifact(ctx, tx, f, string(format))
		if err != nil {
			return err
		}
		if err := store.CreateRun(ctx, tx, store.NewRun{
			ID: runID, Kind: req.Kind, Scope: req.Scope, Tool: toolOf(format), Format: string(format),
			ScheduleID: req.ScheduleID, ArtifactSHA: sha, CreatedBy: req.Actor,
		}); err != nil {
			return err
		}
		if err := store.SetRunDetails(ctx, tx, runID, req.FileName, req.Environment); err != nil {
			return err
		}
		if _, err := in.st.AppendActivity(ctx, tx, store.Activity{
			Actor: actorOr(req.Actor), Action: "run.created", SubjectType: "run", SubjectID: runID, RunID: runID,
			After: map[string]any{"kind": req.Kind, "scope": req.Scope, "format": format, "artifact_sha256": sha, "file": req.FileName, "bytes": n},
		}); err != nil {
			return err
		}
		_, err = store.Enqueue(ctx, tx, bus.TopicScanResults, runID, msg, map[string]string{store.HeaderRunID: runID})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("recording run: %w", err)
	}
	in.log.Info("run received", "run_id", runID, "format", format, "kind", req.Kind, "bytes", n)
	return runID, nil
}

func actorOr(a string) string {
	if a == "" {
		return "system"
	}
	return a
}
