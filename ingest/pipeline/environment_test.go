package pipeline_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestRunEnvironment checks that a run's environmental CVSS context (what a
// schedule's `environment` sets) reaches scoring: the same vector scores
// differently, the severity follows the environmental score, and the
// findings say the score came from context.
func TestRunEnvironment(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const sarif = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"envtool","rules":[{"id":"R1","properties":{"cvssV3":"CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:L/A:N"}}]}},
"results":[{"ruleId":"R1","message":{"text":"x"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.go"},"region":{"startLine":1}}}]}]}]}`
	submit := func(scope, env string) string {
		id, err := h.intake.Submit(h.ctx, bytes.NewReader([]byte(sarif)), pipeline.Request{Scope: scope, Environment: env, FileName: "env.sarif"})
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		return id
	}
	plain, ctxRun := submit("repo-plain", ""), submit("repo-critical", "CR:H/IR:H/AR:H/MAV:N/MAC:L/MPR:N/MUI:N")
	h.waitRunStatus(plain, "succeeded", time.Minute)
	h.waitRunStatus(ctxRun, "succeeded", time.Minute)

	var base, envScore float64
	var sev string
	if err := storetest.SQL(t, h.st).QueryRow(h.ctx, `SELECT cvss_base, cvss_environmental, severity FROM findings WHERE scope = 'repo-plain'`).Scan(&base, &envScore, &sev); err != nil {
		t.Fatal(err)
	}
	if base != envScore || sev != "low" {
		t.Errorf("without context: base %.1f environmental %.1f severity %s", base, envScore, sev)
	}
	var contextual bool
	if err := storetest.SQL(t, h.st).QueryRow(h.ctx, `SELECT cvss_base, cvss_environmental, severity, (data->'cvss'->>'contextual')::bool FROM findings WHERE scope = 'repo-critical'`).
		Scan(&base, &envScore, &sev, &contextual); err != nil {
		t.Fatal(err)
	}
	if envScore <= base || sev == "low" || !contextual {
		t.Errorf("with context: base %.1f environmental %.1f severity %s contextual %v", base, envScore, sev, contextual)
	}

	if _, err := h.intake.Submit(h.ctx, bytes.NewReader([]byte(sarif)), pipeline.Request{Scope: "x", Environment: "CR:Q"}); err == nil {
		t.Error("an invalid environment was accepted")
	}
}
