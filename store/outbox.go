package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

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
	// Refusals counts the earlier attempts in which the broker refused
	// this row itself (set by RelayOutbox; EnqueueBatch ignores it).
	Refusals int
}

// OutboxResult is what the relay did with the rows RelayOutbox handed it,
// row by row. A row in none of its lists was not attempted (its key was
// held back, or the pass ended first): it stays pending as it was.
type OutboxResult struct {
	// Sent rows reached Kafka.
	Sent []int64
	// Refused rows were refused by the broker this time, for a reason that
	// may pass: their refusals count goes up and they stay pending.
	Refused []int64
	// Failed rows were attempted and failed for a reason that says nothing
	// about them (the broker unreachable): they stay pending.
	Failed []int64
	// Dead rows are dead-lettered, with the reason: they are marked failed
	// and no longer block their key, and the run or ledger row each one
	// queued fails with the reason.
	Dead map[int64]string
	// Err is the failure that ended the pass, if one did; it is recorded on
	// the Refused and Failed rows.
	Err error
}

// RelayOutbox delivers one batch of at most limit pending rows: in one
// transaction it claims them, hands them in id order to publish and
// records what publish reports (OutboxResult): sent rows are marked sent
// (and the runs they queue, queued), dead-lettered rows failed (and their
// runs and ledger rows too), refused and failed rows keep the attempt and
// its error. It returns the result, and res.Err or a database error.
//
// Replicas share the outbox: a row another relay has claimed is skipped,
// and so is every row whose (topic, key) has an earlier row still pending,
// so that a key's messages reach Kafka in id order however many relays
// run. A dead-lettered row is no longer pending: the rows behind it flow.
// Delivery is at-least-once: a crash between publish and commit sends the
// batch again.
func (s *Store) RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxMessage) OutboxResult) (OutboxResult, error) {
	var res OutboxResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		msgs, err := claimOutbox(ctx, tx, limit)
		if err != nil || len(msgs) == 0 {
			return err
		}
		res = publish(ctx, msgs)
		return recordOutbox(ctx, tx, msgs, res)
	})
	if err != nil {
		// Nothing was recorded: every claimed row is offered again, those
		// already published included (at-least-once).
		return OutboxResult{Err: err}, err
	}
	return res, res.Err
}

// claimOutbox locks up to limit pending rows in id order for this
// transaction; concurrent relays skip each other's rows. Of those, it
// keeps the rows with no earlier pending row of the same topic and key
// outside the claim: that earlier row belongs to another relay (or failed
// to send), and sending past it would reorder the key.
func claimOutbox(ctx context.Context, tx pgx.Tx, limit int) ([]OutboxMessage, error) {
	rows, err := tx.Query(ctx, `
		WITH c AS (
			SELECT id, topic, key, payload, headers, refusals
			FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL
			ORDER BY id LIMIT $1
			FOR UPDATE SKIP LOCKED
		)
		SELECT id, topic, coalesce(key, ''), payload, headers, refusals FROM c
		WHERE NOT EXISTS (
			SELECT 1 FROM outbox o
			WHERE o.sent_at IS NULL AND o.failed_at IS NULL AND o.id < c.id
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
		if err := r.Scan(&m.ID, &m.Topic, &m.Key, &m.Payload, &hdr, &m.Refusals); err != nil {
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

// recordOutbox records res for the claimed msgs in tx.
func recordOutbox(ctx context.Context, tx pgx.Tx, msgs []OutboxMessage, res OutboxResult) error {
	byID := make(map[int64]OutboxMessage, len(msgs))
	for _, m := range msgs {
		byID[m.ID] = m
	}
	if len(res.Sent) > 0 {
		var runIDs []string
		for _, id := range res.Sent {
			if r := byID[id].Headers[HeaderRunID]; r != "" {
				runIDs = append(runIDs, r)
			}
		}
		if err := markOutboxSent(ctx, tx, res.Sent, runIDs); err != nil {
			return err
		}
	}
	for id, reason := range res.Dead {
		if err := markOutboxDead(ctx, tx, byID[id], reason); err != nil {
			return err
		}
	}
	errText := ""
	if res.Err != nil {
		errText = res.Err.Error()
	}
	if len(res.Refused) > 0 {
		if _, err := tx.Exec(ctx, `
			UPDATE outbox SET attempts = attempts + 1, refusals = refusals + 1, last_error = nullif($2, '')
			WHERE id = ANY($1)`, res.Refused, errText); err != nil {
			return fmt.Errorf("recording refused outbox rows: %w", err)
		}
	}
	if len(res.Failed) > 0 {
		if _, err := tx.Exec(ctx, `
			UPDATE outbox SET attempts = attempts + 1, last_error = nullif($2, '')
			WHERE id = ANY($1)`, res.Failed, errText); err != nil {
			return fmt.Errorf("recording failed outbox deliveries: %w", err)
		}
	}
	return nil
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

// markOutboxDead dead-letters a row: it is marked failed with the reason,
// and what it would have set going fails with it: the run it queues (one
// that has not started: a run that got further came by another way) and
// the ledger row whose scan request it is (while still pending).
func markOutboxDead(ctx context.Context, tx pgx.Tx, m OutboxMessage, reason string) error {
	if _, err := tx.Exec(ctx, `
		UPDATE outbox SET failed_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1`, m.ID, reason); err != nil {
		return fmt.Errorf("dead-lettering outbox row %d: %w", m.ID, err)
	}
	why := fmt.Sprintf("could not be delivered to Kafka (outbox row %d dead-lettered): %s", m.ID, reason)
	if id := m.Headers[HeaderRunID]; isUUID(id) {
		if _, err := tx.Exec(ctx, `
			UPDATE scan_runs SET status = 'failed', error = $2, finished_at = now()
			WHERE id = $1::uuid AND status IN ('received', 'queued')`, id, why); err != nil {
			return fmt.Errorf("failing run %s of dead-lettered outbox row %d: %w", id, m.ID, err)
		}
	}
	if id, err := strconv.ParseInt(m.Headers[HeaderLedgerID], 10, 64); err == nil {
		if _, err := tx.Exec(ctx, `
			UPDATE schedule_ledger SET status = 'failed', error = $2, finished_at = now()
			WHERE id = $1 AND status = 'pending'`, id, why); err != nil {
			return fmt.Errorf("failing ledger row %d of dead-lettered outbox row %d: %w", id, m.ID, err)
		}
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
