package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// OutboxChannel is the NOTIFY channel that wakes the outbox relay.
const OutboxChannel = "starpipe_outbox"

// HeaderRunID marks an outbox row that queues a run: once it is delivered
// the run moves from received to queued.
const HeaderRunID = "run_id"

// HeaderLedgerID marks an outbox row that queues the scan request of a
// ledger row: should the row be dead-lettered, the ledger row fails.
const HeaderLedgerID = "ledger_id"

// OutboxMessage is a pending outbox row.
type OutboxMessage struct {
	ID      int64
	Topic   string
	Key     string
	Payload []byte
	Headers map[string]string
}

// RelayOutbox delivers one batch of at most limit pending rows: in one
// transaction it claims them, hands them in id order to publish and, when
// publish returns nil, marks them sent (and the runs they queue, queued).
// It returns how many rows were sent. When publish fails, the claim is
// rolled back and the attempt recorded on the rows, so they are offered
// again.
//
// Replicas share the outbox: a row another relay has claimed is skipped,
// and so is every row whose (topic, key) has an earlier row still unsent,
// so that a key's messages reach Kafka in id order however many relays
// run. Delivery is at-least-once: a crash between publish and commit sends
// the batch again.
func (s *Store) RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxMessage) error) (int, error) {
	var claimed []int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		msgs, err := claimOutbox(ctx, tx, limit)
		if err != nil || len(msgs) == 0 {
			return err
		}
		var runIDs []string
		for _, m := range msgs {
			claimed = append(claimed, m.ID)
			if id := m.Headers[HeaderRunID]; id != "" {
				runIDs = append(runIDs, id)
			}
		}
		if err := publish(ctx, msgs); err != nil {
			return err
		}
		return markOutboxSent(ctx, tx, claimed, runIDs)
	})
	if err != nil {
		if len(claimed) > 0 && ctx.Err() == nil {
			if merr := s.markOutboxFailed(context.WithoutCancel(ctx), claimed, err); merr != nil {
				err = errors.Join(err, merr)
			}
		}
		return 0, err
	}
	return len(claimed), nil
}

// claimOutbox locks up to limit unsent rows in id order for this
// transaction; concurrent relays skip each other's rows. Of those, it
// keeps the rows with no earlier unsent row of the same topic and key
// outside the claim: that earlier row belongs to another relay (or failed
// to send), and sending past it would reorder the key.
func claimOutbox(ctx context.Context, tx pgx.Tx, limit int) ([]OutboxMessage, error) {
	rows, err := tx.Query(ctx, `
		WITH c AS (
			SELECT id, topic, key, payload, headers
			FROM outbox WHERE sent_at IS NULL
			ORDER BY id LIMIT $1
			FOR UPDATE SKIP LOCKED
		)
		SELECT id, topic, coalesce(key, ''), payload, headers FROM c
		WHERE NOT EXISTS (
			SELECT 1 FROM outbox o
			WHERE o.sent_at IS NULL AND o.id < c.id
			  AND o.topic = c.topic AND o.key IS NOT DISTINCT FROM c.key
			  AND o.id NOT IN (SELECT id FROM c)
		)
		ORDER BY id`, limit)
	if err != nil {
		return nil, fmt.Errorf("claiming outbox rows: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxMessage, error) {
		var m OutboxMessage
		var hdr []byte
		if err := r.Scan(&m.ID, &m.Topic, &m.Key, &m.Payload, &hdr); err != nil {
			return m, err
		}
		if len(hdr) > 0 {
			if err := json.Unmarshal(hdr, &m.Headers); err != nil {
				return m, fmt.Errorf("outbox row %d headers: %w", m.ID, err)
			}
		}
		return m, nil
	})
}

// markOutboxSent records delivery. Runs whose run-received message was
// delivered move from received to queued.
func markOutboxSent(ctx context.Context, tx pgx.Tx, ids []int64, runIDs []string) error {
	if _, err := tx.Exec(ctx, `UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("marking outbox rows sent: %w", err)
	}
	if len(runIDs) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE scan_runs SET status = 'queued' WHERE id = ANY($1::uuid[]) AND status = 'received'`, runIDs); err != nil {
			return fmt.Errorf("marking runs queued: %w", err)
		}
	}
	return nil
}

// markOutboxFailed records a failed delivery attempt.
func (s *Store) markOutboxFailed(ctx context.Context, ids []int64, cause error) error {
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)`, ids, cause.Error()); err != nil {
		return fmt.Errorf("recording outbox failure: %w", err)
	}
	return nil
}

// ListenOutbox holds one connection listening on OutboxChannel and calls
// notify for every notification (Enqueue sends one per committed
// transaction) until ctx ends or the connection fails. It returns nil when
// ctx ends; the caller reconnects on an error, and should poll as well,
// since notifications sent while no one listens are lost.
func (s *Store) ListenOutbox(ctx context.Context, notify func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listening for outbox rows: %w", err)
	}
	// The connection goes back to the pool listening on nothing: a
	// connection that still listens would queue notifications for the next
	// user of it.
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
		return fmt.Errorf("listening for outbox rows: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+OutboxChannel); err != nil {
			// A connection that cannot UNLISTEN is broken; closing it makes
			// the pool drop it instead of handing it out again.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("waiting for outbox notification: %w", err)
		}
		notify()
	}
}
