package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/store"
)

// Intake accepts scan output. Nothing is published directly: the artifact
// is streamed into storage in chunks, then the run and an outbox row
// commit in one small transaction with the artifact's row, and the relay
// delivers the outbox row, so an upload succeeds while the broker is down.
type Intake struct {
	st       *store.Store
	maxBytes int64
	log      *slog.Logger
}

// NewIntake builds an intake. maxBytes bounds one upload (< 0: no bound).
func NewIntake(st *store.Store, maxBytes int64, log *slog.Logger) *Intake {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Intake{st: st, maxBytes: maxBytes, log: log.With("component", "intake")}
}

// Submit stores r as a new run and queues it; it returns the run id. r is
// read once, as it arrives: the first 64 KiB are sniffed for the format,
// and the rest goes straight to storage (store.StageArtifact), so memory
// does not grow with the upload's size.
func (in *Intake) Submit(ctx context.Context, r io.Reader, req Request) (string, error) {
	if req.Format == "" {
		req.Format = string(ingest.FormatAuto)
	}
	format, err := ingest.ParseFormat(req.Format)
	if err != nil {
		return "", invalidRequest(err.Error())
	}
	if format == ingest.FormatAuto {
		br := bufio.NewReaderSize(r, ingest.SniffSize)
		// A short body ends the peek early; whatever it holds is sniffed,
		// and a read error comes back from the staging below.
		prefix, _ := br.Peek(ingest.SniffSize)
		if format, err = ingest.Detect(prefix); err != nil {
			if pe, ok := errors.AsType[*parse.Error](err); ok {
				pe.File = req.FileName
				if pe.File == "" {
					pe.File = "upload"
				}
			}
			return "", &RequestError{Kind: ErrUnsupportedFormat, Msg: err.Error()}
		}
		r = br
	}
	if err := req.normalise(format); err != nil {
		return "", err
	}
	staged, err := in.st.StageArtifact(ctx, r, in.maxBytes)
	if errors.Is(err, store.ErrTooLarge) {
		return "", tooLarge(in.maxBytes)
	}
	if err != nil {
		return "", fmt.Errorf("reading upload: %w", err)
	}
	// Until an artifact row takes the chunks they are deleted on the way
	// out, also when the content was already stored under its hash.
	committed := false
	defer func() {
		if !committed {
			in.st.DiscardArtifact(context.WithoutCancel(ctx), staged)
		}
	}()
	runID := uuid.NewString()
	msg, err := bus.Encode(bus.TypeRunReceived, RunReceived{RunID: runID})
	if err != nil {
		return "", err
	}
	sha, n := staged.SHA256, staged.Size
	var isNew bool
	err = in.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if isNew, err = in.st.CommitArtifact(ctx, tx, staged, string(format)); err != nil {
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
	committed = isNew
	in.log.Info("run received", "run_id", runID, "format", format, "kind", req.Kind, "bytes", n, "new_artifact", isNew)
	return runID, nil
}

func actorOr(a string) string {
	if a == "" {
		return "system"
	}
	return a
}

// Abandoned uploads: an upload's chunks are written before its run, and a
// process that dies in between leaves them behind (one that only fails
// deletes them itself). The sweep deletes chunks that no artifact took and
// that nothing wrote to for artifactIdle, a bound well above the time a
// live upload takes to send one chunk (httpserver's body read timeout).
const (
	artifactIdle  = time.Hour
	sweepInterval = 10 * time.Minute
)

// SweepArtifacts deletes abandoned upload chunks at start and then every
// few minutes until ctx ends. Replicas may all run it: the delete is the
// same whoever does it. A failed sweep is logged and tried again later.
func SweepArtifacts(ctx context.Context, st *store.Store, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "artifact-sweep")
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		n, err := st.SweepArtifactBlobs(ctx, artifactIdle)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("sweeping abandoned uploads", "err", err)
		case n > 0:
			log.Info("abandoned uploads deleted", "uploads", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
