package activity

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/starpipe/starpipe/store"
)

// FromStore converts a stored row into its listed and exported form.
func FromStore(s store.ActivityEntry) Entry {
	e := Entry{
		Seq: s.Seq, ID: s.ID, Time: FormatTime(s.At), Actor: s.Actor, Action: s.Action,
		EntityType: s.SubjectType, EntityID: s.SubjectID, PrevHash: s.PrevHash, Hash: s.Hash,
	}
	if s.RunID != "" {
		run := s.RunID
		e.RunID = &run
	}
	// PostgreSQL's jsonb text, carried as is: json.Marshal only drops
	// its insignificant spaces, so numbers stay exactly as the hash saw
	// them.
	if s.Before != nil {
		e.Before = json.RawMessage(s.Before)
	}
	if s.After != nil {
		e.After = json.RawMessage(s.After)
	}
	return e
}

// ChainReader reads the stored chain; *store.Store is one.
type ChainReader interface {
	// ActivityChain returns up to limit rows with afterSeq < seq <=
	// lastSeq (0: no bound), in chain order.
	ActivityChain(ctx context.Context, afterSeq, lastSeq int64, limit int) ([]store.ActivityEntry, error)
}

// ExportSource is what WriteExport reads; *store.Store is one.
type ExportSource interface {
	ChainReader
	ActivityChainSpan(ctx context.Context, from, to time.Time) (store.ActivityChainRange, error)
}

// chainPage is how many rows the export and the live check read at a time.
const chainPage = 1000

// WriteExport writes the stretch of the chain covering [from, to) (zero
// bounds are open; see store.ActivityChainSpan) as an export file that
// VerifyExport checks alone. It reads in pages, so memory stays flat
// whatever the range. Rows committed while it runs, after the stretch was
// fixed, are not included.
func WriteExport(ctx context.Context, w io.Writer, src ExportSource, from, to, now time.Time) error {
	span, err := src.ActivityChainSpan(ctx, from, to)
	if err != nil {
		return err
	}
	h := Header{Format: ExportFormat, Version: 1, ExportedAt: FormatTime(now), FirstSeq: span.FirstSeq, PrevHash: span.PrevHash}
	if !from.IsZero() {
		h.From = FormatTime(from)
	}
	if !to.IsZero() {
		h.To = FormatTime(to)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("writing the export header: %w", err)
	}
	end := End{LastSeq: span.FirstSeq - 1, LastHash: span.PrevHash}
	for after := span.FirstSeq - 1; after < span.LastSeq; {
		rows, err := src.ActivityChain(ctx, after, span.LastSeq, chainPage)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return fmt.Errorf("the activity chain has no rows after seq %d up to %d", after, span.LastSeq)
		}
		for _, r := range rows {
			if err := enc.Encode(FromStore(r)); err != nil {
				return fmt.Errorf("writing activity row %d: %w", r.Seq, err)
			}
			end.Count++
			end.LastSeq, end.LastHash = r.Seq, r.Hash
			after = r.Seq
		}
	}
	if err := enc.Encode(endLine{End: &end}); err != nil {
		return fmt.Errorf("writing the export's end line: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the export: %w", err)
	}
	return nil
}

// VerifyTable checks the whole stored chain from its first row. A broken
// chain is a *BreakError naming the first row that breaks it.
func VerifyTable(ctx context.Context, src ChainReader) (Result, error) {
	v := NewVerifier(1, GenesisHash)
	res := Result{FirstSeq: 1, PrevHash: GenesisHash}
	for {
		rows, err := src.ActivityChain(ctx, v.LastSeq(), 0, chainPage)
		if err != nil {
			return res, err
		}
		for _, r := range rows {
			if err := v.Check(FromStore(r)); err != nil {
				return res, err
			}
		}
		if len(rows) < chainPage {
			break
		}
	}
	res.LastSeq, res.Count, res.LastHash = v.LastSeq(), v.Count(), v.LastHash()
	return res, nil
}
