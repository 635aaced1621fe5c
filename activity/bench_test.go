package activity_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// BenchmarkAppendActivityBatch measures what the hash chain costs the
// pipeline: one transaction appending a batch of status-change rows with
// store.AppendActivityBatch (COPY), as the ingest consumer does per batch
// of findings, with the chain trigger (chain=on) and on the same schema
// before migration 00013 (chain=off), side by side.
//
//	go test -run '^$' -bench AppendActivityBatch -benchtime 200x ./activity/
func BenchmarkAppendActivityBatch(b *testing.B) {
	const batch = 500
	acts := make([]store.Activity, batch)
	now := time.Now().UTC()
	for i := range acts {
		acts[i] = store.Activity{At: now, Actor: "system", Action: "finding.opened", SubjectType: "finding",
			SubjectID: strconv.Itoa(1000 + i), RunID: "0195a0c4-1f2e-7d3c-9b4a-aabbccddeeff",
			After: map[string]string{"status": "open"}}
	}
	open := func(b *testing.B, chained bool) *store.Store {
		if chained {
			st, _ := storetest.New(b)
			return st
		}
		url := storetest.NewEmptyDatabase(b)
		if err := store.Migrate(b.Context(), url); err != nil {
			b.Fatal(err)
		}
		if err := store.MigrateDown(b.Context(), url, beforeChain(b, url)); err != nil {
			b.Fatal(err)
		}
		st, err := store.Open(b.Context(), url, store.WithMaxConns(2))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		return st
	}
	for _, chained := range []bool{false, true} {
		name := "chain=off"
		if chained {
			name = "chain=on"
		}
		b.Run(fmt.Sprintf("%s/rows=%d", name, batch), func(b *testing.B) {
			st := open(b, chained)
			ctx := b.Context()
			b.ResetTimer()
			for range b.N {
				if err := st.InTx(ctx, func(tx *store.Tx) error { return store.AppendActivityBatch(ctx, tx, acts) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
