package api

import (
	"encoding/json"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// Store values with every field set ("full") and with every optional field
// at its zero value ("sparse"), for the wire-shape tests.

var (
	sampleT0 = time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	sampleT1 = time.Date(2030, 1, 3, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	sampleID = "0191e7b6-6a4a-7c3e-9a55-4b8e2e4f3a10"
)

func ptr[T any](v T) *T { return &v }

func sampleRuns() map[string]store.Run {
	return map[string]store.Run{
		"full": {
			ID: sampleID, ScheduleID: "web", Kind: "external", Scope: "example.com", Tool: "nuclei",
			Format: "nuclei-jsonl", FileName: "out.jsonl", Status: "failed", Error: "boom",
			ArtifactSHA256: "abc123", Counts: store.RunCounts{BatchesExpected: ptr(3), BatchesStored: 2,
				FindingsSeen: 7, Observed: map[string]int{"info": 1, "low": 0, "medium": 2, "high": 3, "critical": 1}},
			Stats:     json.RawMessage(`{"sanitized":{"nul":1}}`),
			CreatedAt: sampleT0, StartedAt: ptr(sampleT0.Add(time.Second)), FinishedAt: ptr(sampleT1),
			CreatedBy: "ci",
		},
		"sparse": {ID: sampleID, Kind: "code", Scope: "repo", Tool: "semgrep", Format: "sarif", Status: "received", CreatedAt: sampleT0},
	}
}

func sampleFindingRows() map[string]store.FindingRow {
	return map[string]store.FindingRow{
		"full": {
			ID: 42, Scope: "example.com", Fingerprint: "fp1", Kind: "external", Tool: "nuclei", Rule: "CVE-2021-1",
			RuleName: "Some rule", Title: "=cmd|' /C calc'!A0", Severity: "high", SeveritySource: "cvss",
			CVSS:   &store.CVSS{Version: "3.1", Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Base: 9.8, Temporal: 9.1, Environmental: 8.75},
			Status: "resolved", Suppressed: true,
			Location: finding.Location{Kind: finding.LocationFile, URI: "a/b.go", StartLine: 3, StartColumn: 4, EndLine: 5, EndColumn: 6, Logical: "pkg.F"},
			CWE:      []int{79, 89}, CVE: []string{"CVE-2021-1"}, FirstSeen: sampleT0, LastSeen: sampleT1,
			SLADue: ptr(sampleT1), ResolvedAt: ptr(sampleT1), ResolvedByRun: ptr(sampleID),
			Controls: []store.ControlRef{{Version: "4.0.13", ID: "TVM-07"}, {Version: "4.1", ID: "I&S-03"}},
		},
		"sparse": {
			ID: 1, Scope: "s", Fingerprint: "f", Kind: "code", Tool: "t", Rule: "r", Title: "x", Severity: "info",
			Status: "open", CWE: []int{}, CVE: []string{}, FirstSeen: sampleT0, LastSeen: sampleT0, Controls: []store.ControlRef{},
		},
		"nil-lists": {ID: 2, FirstSeen: sampleT0, LastSeen: sampleT0},
	}
}

func sampleFindingDetails() map[string]store.FindingDetail {
	rows := sampleFindingRows()
	return map[string]store.FindingDetail{
		"full": {
			FindingRow: rows["full"], ToolVersion: "3.2.1", Message: "msg", Description: "desc",
			Tags: []string{"a", "b"}, References: []string{"https://x"}, Evidence: []string{"ev"},
			SuppressionJustification: "accepted risk", LastRunID: ptr(sampleID), UpdatedAt: sampleT1,
			ObservationsTotal: 2,
			Observations: []store.Observation{
				{RunID: sampleID, SeenAt: sampleT1, RulesHash: "deadbeef", Controls: []store.ControlLink{{Version: "4.1", ID: "TVM-07", Rule: "r1", Reason: "because"}}},
				{RunID: sampleID, SeenAt: sampleT0},
			},
			Controls: []store.ControlLink{{Version: "4.1", ID: "TVM-07", Rule: "r1", Reason: "because"}},
		},
		"sparse": {
			FindingRow: rows["sparse"], Tags: []string{}, References: []string{}, Evidence: []string{},
			UpdatedAt: sampleT0, Observations: []store.Observation{}, Controls: []store.ControlLink{},
		},
		"nil-lists": {FindingRow: rows["nil-lists"], UpdatedAt: sampleT0},
	}
}

func sampleLedgerEntries() map[string]store.LedgerEntry {
	return map[string]store.LedgerEntry{
		"full": {
			ID: 9, Schedule: "web", Due: sampleT0, Status: "failed", CatchUp: true, RunID: sampleID,
			Runs: []store.LedgerRun{
				{ID: sampleID, Scope: "example.com", Tool: "amass", Status: "succeeded"},
				{ID: sampleID, Scope: "https://a.example.com", Tool: "nuclei", Status: "failed", Error: "timeout"},
			},
			ClaimedAt: sampleT0, StartedAt: sampleT1, FinishedAt: sampleT1, Error: "one run failed",
		},
		"sparse":    {ID: 1, Schedule: "web", Due: sampleT0, Status: "missed", Runs: []store.LedgerRun{}, ClaimedAt: sampleT0},
		"nil-lists": {ID: 2, Schedule: "web", Due: sampleT0, Status: "pending", ClaimedAt: sampleT0},
	}
}

func sampleCredentials() map[string]store.CredentialMeta {
	return map[string]store.CredentialMeta{
		"full": {ID: "c1", Name: "app", Kind: "basic", Username: "u", HeaderName: "X-Key", KeyID: "k1",
			Targets: []string{"https://app.example.com/"}, AllowHTTP: true, CreatedAt: sampleT0, UpdatedAt: sampleT1,
			CreatedBy: "alice", RotatedAt: ptr(sampleT1)},
		"sparse": {ID: "c2", Name: "tok", Kind: "bearer", KeyID: "k1", CreatedAt: sampleT0, UpdatedAt: sampleT0, CreatedBy: "bob"},
	}
}

func sampleTokens() map[string]store.TokenInfo {
	return map[string]store.TokenInfo{
		"full":   {Name: "ci", Role: "ingest", CreatedAt: sampleT0, LastUsedAt: ptr(sampleT1), RevokedAt: ptr(sampleT1)},
		"sparse": {Name: "admin", Role: "admin", CreatedAt: sampleT0},
	}
}
