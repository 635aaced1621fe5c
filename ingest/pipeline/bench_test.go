package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/scoring"
	"github.com/starpipe/starpipe/store/storetest"
)

const benchFindings = 100_000

// BenchmarkEndToEnd measures findings per second from an upload to scored,
// mapped rows in PostgreSQL (the run succeeded: findings, observations,
// control links, SLA dates, activity rows and finding events committed),
// next to a raw COPY of the same normalised rows into a table of the same
// shape in the same database. Peak RSS is this process's (the broker runs
// in it; PostgreSQL does not).
//
//	make bench BENCHPKGS=./ingest/pipeline/
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./ingest/pipeline/
func BenchmarkEndToEnd(b *testing.B) {
	data := genSARIF("synthscan", seq(0, benchFindings))
	var pipelineRate float64

	b.Run("path=pipeline", func(b *testing.B) {
		h := newHarness(b, harnessOpts{batchSize: 500})
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		var elapsed time.Duration
		for i := range b.N {
			scope := fmt.Sprintf("git.example.com/bench/%d", i)
			start := time.Now()
			run := h.submit(scope, data)
			h.waitRunStatus(run, "succeeded", 10*time.Minute)
			elapsed += time.Since(start)

			b.StopTimer()
			var phases string
			if err := storetest.SQL(b, h.st).QueryRow(h.ctx, `
				SELECT format('queue %s, parse+publish %s, store %s, finish %s',
					r.started_at - r.created_at, min(b.stored_at) - r.started_at,
					max(b.stored_at) - min(b.stored_at), r.finished_at - max(b.stored_at))
				FROM scan_runs r JOIN run_batches b ON b.run_id = r.id WHERE r.id = $1::uuid
				GROUP BY r.id`, run).Scan(&phases); err != nil {
				b.Fatal(err)
			}
			b.Logf("run phases: %s", phases)
			if c := h.countFindings(scope, "open"); c != benchFindings {
				b.Fatalf("%d findings stored, want %d", c, benchFindings)
			}
			// The relay's backlog of opened events is not part of the next
			// iteration's figure.
			h.waitFor("outbox drained", 10*time.Minute, func() bool {
				return h.count(`SELECT count(*) FROM outbox WHERE sent_at IS NULL`) == 0
			})
			b.StartTimer()
		}
		pipelineRate = float64(benchFindings*b.N) / elapsed.Seconds()
		b.ReportMetric(pipelineRate, "findings/s")
		b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
	})

	b.Run("path=raw-copy", func(b *testing.B) {
		h := newHarness(b, harnessOpts{noConsumer: true})
		ctx := h.ctx
		rows := normalisedRows(b, data)
		if _, err := storetest.SQL(b, h.st).Exec(ctx, `CREATE TABLE raw_findings (LIKE findings INCLUDING ALL)`); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		var elapsed time.Duration
		for range b.N {
			b.StopTimer()
			if _, err := storetest.SQL(b, h.st).Exec(ctx, `TRUNCATE raw_findings`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			n := storetest.CopyRows(b, h.st, "raw_findings", rawColumns, rows)
			elapsed += time.Since(start)
			if n != benchFindings {
				b.Fatalf("copied %d rows, want %d", n, benchFindings)
			}
		}
		rate := float64(benchFindings*b.N) / elapsed.Seconds()
		b.ReportMetric(rate, "findings/s")
		b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
		if pipelineRate > 0 {
			b.ReportMetric(pipelineRate/rate, "pipeline/raw")
		}
	})
}

var rawColumns = []string{
	"scope", "fingerprint", "kind", "tool", "tool_version", "rule_id", "rule_name",
	"title", "message", "description", "location", "location_uri", "cwe", "cve", "tags",
	"cvss_version", "cvss_vector", "cvss_base", "cvss_temporal", "cvss_environmental",
	"severity", "severity_source", "status", "suppressed", "suppression_justification",
	"first_seen", "last_seen", "sla_due", "data",
}

// normalisedRows parses, scores and maps data as the pipeline does and
// returns the findings rows, ready for COPY: the raw path starts where the
// pipeline's work ends.
func normalisedRows(b *testing.B, data []byte) [][]any {
	m, err := mapping.Default(mapping.WithAllVersions())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var rows [][]any
	_, _, err = ingest.ParseReader(context.Background(), bytes.NewReader(data), ingest.FormatSARIF,
		parse.Options{File: "bench.sarif", Kind: finding.KindCode, Scope: "git.example.com/bench/raw"},
		parse.Sink{Finding: func(f *finding.Finding) error {
			scoring.Apply(f, nil)
			m.Apply(f)
			loc, err := json.Marshal(f.Location)
			if err != nil {
				return err
			}
			doc, err := json.Marshal(f)
			if err != nil {
				return err
			}
			var ver, vec, base, temp, env any
			if f.CVSS != nil {
				ver, vec, base, temp, env = f.CVSS.Version, f.CVSS.Vector, f.CVSS.Base, f.CVSS.Temporal, f.CVSS.Environmental
			}
			cwe := make([]int32, len(f.CWE))
			for i, c := range f.CWE {
				cwe[i] = int32(c)
			}
			rows = append(rows, []any{
				f.Scope, f.Fingerprint, string(f.Kind), f.Tool, f.ToolVersion, f.RuleID, f.RuleName,
				f.Title, f.Message, f.Description, json.RawMessage(loc), f.Location.URI, cwe, nonNilStrings(f.CVE), nonNilStrings(f.Tags),
				ver, vec, base, temp, env,
				f.Severity.String(), string(f.SeveritySource), "open", f.Suppressed, f.Justification,
				now, now, now.Add(30 * 24 * time.Hour), json.RawMessage(doc),
			})
			return nil
		}})
	if err != nil || len(rows) != benchFindings {
		b.Fatalf("normalising: %d rows, %v", len(rows), err)
	}
	return rows
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// peakRSSMB is this process's peak resident set so far, in MiB.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux reports KiB
}
