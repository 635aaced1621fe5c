package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

// ScanRequest is the payload of a scan-request message; it lives in bus
// so that the worker reads it without importing the scheduler.
type ScanRequest = bus.ScanRequest

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
	// The ledger id header lets the relay fail the ledger row should the
	// request ever be dead-lettered instead of delivered.
	hdr := map[string]string{store.HeaderLedgerID: strconv.FormatInt(req.LedgerID, 10)}
	if _, err := store.Enqueue(ctx, q, bus.TopicScanRequests, req.Schedule, payload, hdr); err != nil {
		return fmt.Errorf("queueing scan request for %s: %w", req.Schedule, err)
	}
	return nil
}

// DecodeScanRequest reads a scan-request message value (bus.DecodeScanRequest).
func DecodeScanRequest(value []byte) (ScanRequest, error) { return bus.DecodeScanRequest(value) }

// Record converts a schedule to its stored form (store.ScheduleOf).
func Record(s spec.Schedule) (store.Schedule, error) { return store.ScheduleOf(s) }

// SpecOf decodes a stored schedule's definition (store.Schedule.Definition).
func SpecOf(sc store.Schedule) (spec.Schedule, error) { return sc.Definition() }

// NextDue is the first due time of a stored schedule after now
// (store.Schedule.NextDue).
func NextDue(sc store.Schedule, now time.Time) (time.Time, error) { return sc.NextDue(now) }

// Upserter stores schedules; *store.Store implements it.
type Upserter interface {
	UpsertSchedules(ctx context.Context, scs []store.Schedule, actor string) ([]bool, error)
}

// Apply validates every schedule (as a file: duplicate names are refused)
// against the admin's bounds in opts, admits each (spec.Admit: target
// names, credential boundaries), and upserts them all in one transaction,
// or none when any is refused. created[i] reports whether ss[i] was new.
func Apply(ctx context.Context, st Upserter, ss []spec.Schedule, actor string, opts spec.Options) (created []bool, err error) {
	for i := range ss {
		ss[i].SetDefaults()
	}
	if err := spec.ValidateAll(ss, opts); err != nil {
		return nil, err
	}
	var errs []error
	for i, s := range ss {
		err := spec.Admit(ctx, s, opts)
		var fe *spec.FieldError
		if errors.As(err, &fe) {
			fe.Index = i
		} else if err != nil {
			return nil, err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
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
