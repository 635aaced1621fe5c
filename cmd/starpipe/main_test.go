package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corpusfiles "github.com/starpipe/starpipe/internal/corpus"
)

// run executes the CLI in-process and returns its output and exit status.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(t.Context())
	code := 0
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else {
			code = 1
			errOut.WriteString(err.Error())
		}
	}
	return out.String(), errOut.String(), code
}

func corpus(t *testing.T, path string) string {
	t.Helper()
	return corpusfiles.Path(t, path)
}

func TestScoreCommand(t *testing.T) {
	in := "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\nCVSS:3.1/AV:N/AC:L\nCVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/E:U/RC:U\n"
	out, _, code := run(t, in, "score")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 3 {
		t.Fatalf("score: exit %d, output %q", code, out)
	}
	if lines[0] != "9.8 9.8 9.8 Critical" {
		t.Errorf("line 1 = %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "error: ") {
		t.Errorf("line 2 = %q, want an error", lines[1])
	}
	if !strings.HasPrefix(lines[2], "10.0 ") {
		t.Errorf("line 3 = %q", lines[2])
	}
}

func TestIngestDryRunExplain(t *testing.T) {
	out, stderr, code := run(t, "", "ingest", "--dry-run", "--print-findings", "--explain", "--scope", "https://demo.test",
		corpus(t, "nuclei/nuclei/dd-many-findings-new.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var summary struct {
		Findings int            `json:"findings"`
		Controls map[string]int `json:"controls"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &summary); err != nil {
		t.Fatal(err)
	}
	if summary.Findings != 2 || summary.Controls["TVM-07"] != 2 {
		t.Errorf("summary = %+v", summary)
	}
	var f struct {
		Controls []struct{ Version, ID, Rule, Reason string } `json:"controls"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Controls) == 0 || f.Controls[0].Reason == "" || f.Controls[0].Rule == "" {
		t.Errorf("--explain finding line has no reasons: %s", lines[0])
	}
}

func TestIngestDryRunCustomMapping(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	err := os.WriteFile(rules, []byte(`version: "4.0.13"
rules:
  - id: everything-is-ivs-04
    match: {any: true}
    controls:
      "4.0.13": [IVS-04]
    reason: "{{.Tool}} result {{.RuleID}}"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "", "ingest", "--dry-run", "--mapping", rules, corpus(t, "nuclei/nuclei/dd-many-findings-new.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, `"controls":{"IVS-04":2}`) {
		t.Errorf("custom rules not applied: %s", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - id: x\n    match: {tool: nuclei}\n    controls:\n      \"4.0.13\": [TVM-99]\n    reason: r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, "", "ingest", "--dry-run", "--mapping", bad, corpus(t, "nuclei/nuclei/dd-many-findings-new.json"))
	if code == 0 || !strings.Contains(stderr, bad+":5") {
		t.Errorf("bad rules file: exit %d, stderr %q (want file:line)", code, stderr)
	}
}

func TestIngestDryRunRejectsUnsupported(t *testing.T) {
	out, _, code := run(t, "", "ingest", "--dry-run", corpus(t, "json/trivy/trivy-alpine-310.json"))
	if code != 1 || !strings.Contains(out, "not a supported format") {
		t.Errorf("exit %d, output %s", code, out)
	}
}

func TestControlsCrosswalk(t *testing.T) {
	out, stderr, code := run(t, "", "controls", "--domain", "TVM", "--framework", "iso27001")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "TVM-07") || !strings.Contains(out, "8.8") {
		t.Errorf("controls output lacks TVM-07 and its ISO 27001 crosswalk: %s", out)
	}
}

// TestSchedulesValidateExample validates the example schedules against
// the admin configuration: refused under the defaults (loopback targets,
// an analyser nobody defined), valid under the bounds `starpipe dev`
// gives the demo.
func TestSchedulesValidateExample(t *testing.T) {
	example := filepath.Join("..", "..", "configs", "schedules.example.yaml")
	_, stderr, code := run(t, "", "schedules", "validate", "-f", example)
	if code != 1 || !strings.Contains(stderr, "targets.urls[0]: 127.0.0.1 is loopback") || !strings.Contains(stderr, `code.analyzer: no analyser named "demo-sast"`) {
		t.Errorf("default bounds: exit %d: %s", code, stderr)
	}
	cfg := filepath.Join(t.TempDir(), "dev.yaml")
	devBounds := "analyzers:\n  demo-sast:\n    command: [sh, demo-sast.sh]\nscan:\n  allow_networks: [127.0.0.0/8]\n"
	if err := os.WriteFile(cfg, []byte(devBounds), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "", "schedules", "validate", "-c", cfg, "-f", example)
	if code != 0 || !strings.Contains(out+stderr, "3 schedules valid") {
		t.Errorf("demo bounds: exit %d: %s %s", code, out, stderr)
	}
}

func TestIngestNeedsScope(t *testing.T) {
	_, stderr, code := run(t, "", "ingest", "--server", "http://127.0.0.1:1", "--token", "x", corpus(t, "nuclei/nuclei/dd-many-findings-new.json"))
	if code == 0 || !strings.Contains(stderr, "--scope is required") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}
