package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

// ScanRequest is the payload of a scan-request message on
// starpipe.scan.requests, keyed by schedule name. The worker that runs it
// reports the run's progress against LedgerID (see Started and Complete).
type ScanRequest struct {
	LedgerID int64     `json:"ledger_id"`
	Schedule string    `json:"schedule"`
	Due      time.Time `json:"due"`
	// CatchUp marks the run that stands in for missed due times; Due is
	// then the latest of them.
	CatchUp bool `json:"catch_up"`
	// Spec is the schedule as it was when the run was claimed (the JSON
	// form of spec.Schedule), so that an edit after the claim cannot change
	// what this run scans.
	Spec json.RawMessage `json:"spec"`
}

// Publisher queues a scan request. It runs inside the transaction that
// claims the due time (q), so that the claim and the request commit
// together: a crash can lose neither one without the other.
type Publisher interface {
	PublishScanRequest(ctx context.Context, q *store.Tx, req ScanRequest) error
}

// OutboxPublisher writes scan requests to the transactional outbox, from
// which the outbox relay publishes them to Kafka. Nothing durable lives
// only in the broker.
type OutboxPublisher struct{}

// PublishScanRequest implements Publisher.
func (OutboxPublisher) PublishScanRequest(ctx context.Context, q *store.Tx, req ScanRequest) error {
	payload, err := bus.Encode(bus.TypeScanRequest, req)
	if err != nil {
		return err
	}
	if _, err := store.Enqueue(ctx, q, bus.TopicScanRequests, req.Schedule, payload, nil); err != nil {
		return fmt.Errorf("queueing scan request for %s: %w", req.Schedule, err)
	}
	return nil
}

// DecodeScanRequest reads a scan-request message value, for the worker.
func DecodeScanRequest(value []byte) (ScanRequest, error) {
	env, err := bus.Decode(value)
	if err != nil {
		return ScanRequest{}, err
	}
	if env.Type != bus.TypeScanRequest {
		return ScanRequest{}, bus.Poison(fmt.Errorf("scan request: unexpected message type %q", env.Type))
	}
	var req ScanRequest
	if err := env.Unmarshal(&req); err != nil {
		return ScanRequest{}, err
	}
	if req.LedgerID <= 0 || req.Schedule == "" || len(req.Spec) == 0 {
		return ScanRequest{}, bus.Poison(errors.New("scan request: ledger_id, schedule and spec are required"))
	}
	return req, nil
}

// LedgerMarker records a scheduled run's progress; *store.Store
// implements it.
type LedgerMarker interface {
	MarkLedger(ctx context.Context, id int64, status, runID, errText string) error
}

// Started records that the worker began the run of a scan request. runID
// may be empty when the scan run has no id yet.
func Started(ctx context.Context, m LedgerMarker, ledgerID int64, runID string) error {
	return m.MarkLedger(ctx, ledgerID, store.LedgerRunning, runID, "")
}

// Complete records the end of a scheduled run: succeeded when runErr is
// nil, failed with runErr's text otherwise. Calling it again for the same
// outcome (a redelivered request) is harmless.
func Complete(ctx context.Context, m LedgerMarker, ledgerID int64, runID string, runErr error) error {
	if runErr != nil {
		return m.MarkLedger(ctx, ledgerID, store.LedgerFailed, runID, runErr.Error())
	}
	return m.MarkLedger(ctx, ledgerID, store.LedgerSucceeded, runID, "")
}

// Record converts a schedule to its stored form. The schedule should have
// been validated (spec.Decode, spec.DecodeJSON or Validate).
func Record(s spec.Schedule) (store.Schedule, error) {
	s.SetDefaults()
	b, err := json.Marshal(s)
	if err != nil {
		return store.Schedule{}, fmt.Errorf("encoding schedule %s: %w", s.Name, err)
	}
	return store.Schedule{
		Name:     s.Name,
		Kind:     string(s.Kind),
		Enabled:  s.IsEnabled(),
		Cadence:  s.Cadence,
		Timezone: s.Timezone,
		Start:    s.Start,
		Spec:     b,
	}, nil
}

// SpecOf decodes a stored schedule's definition.
func SpecOf(sc store.Schedule) (spec.Schedule, error) {
	var s spec.Schedule
	dec := json.NewDecoder(bytes.NewReader(sc.Spec))
	if err := dec.Decode(&s); err != nil {
		return spec.Schedule{}, fmt.Errorf("decoding stored schedule %s: %w", sc.Name, err)
	}
	return s, nil
}

// NextDue is the first due time of a stored schedule after now, or the
// zero time when it is disabled or never fires again.
func NextDue(sc store.Schedule, now time.Time) (time.Time, error) {
	if !sc.Enabled {
		return time.Time{}, nil
	}
	s, err := SpecOf(sc)
	if err != nil {
		return time.Time{}, err
	}
	c, err := s.CadenceOf()
	if err != nil {
		return time.Time{}, fmt.Errorf("schedule %s: %w", sc.Name, err)
	}
	return c.Next(now), nil
}

// Upserter stores schedules; *store.Store implements it.
type Upserter interface {
	UpsertSchedules(ctx context.Context, scs []store.Schedule, actor string) ([]bool, error)
}

// Apply validates every schedule (as a file: duplicate names are refused)
// and upserts them all in one transaction, or none when any is invalid.
// created[i] reports whether ss[i] was new.
func Apply(ctx context.Context, st Upserter, ss []spec.Schedule, actor string) (created []bool, err error) {
	for i := range ss {
		ss[i].SetDefaults()
	}
	if err := spec.ValidateAll(ss); err != nil {
		return nil, err
	}
	recs := make([]store.Schedule, len(ss))
	for i, s := range ss {
		if recs[i], err = Record(s); err != nil {
			return nil, err
		}
	}
	return st.UpsertSchedules(ctx, recs, actor)
}
