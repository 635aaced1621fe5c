package finding

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseScanKind(t *testing.T) {
	tests := []struct {
		in      string
		want    ScanKind
		wantErr bool
	}{
		{"external", KindExternal, false},
		{"authenticated", KindAuthenticated, false},
		{"code", KindCode, false},
		{"External", "", true}, // kinds are identifiers, not words: exact match
		{"", "", true},
		{"sast", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScanKind(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("ParseScanKind(%q) = %q, %v", tt.in, got, err)
			}
			var ve *ValueError
			if tt.wantErr && (!errors.As(err, &ve) || ve.Field != "kind" || ve.Value != tt.in) {
				t.Fatalf("error %v: want a *ValueError naming kind", err)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in      string
		want    Status
		active  bool
		wantErr bool
	}{
		{"open", StatusOpen, true, false},
		{"reopened", StatusReopened, true, false},
		{"resolved", StatusResolved, false, false},
		{"accepted", StatusAccepted, false, false},
		{"false_positive", StatusFalsePositive, false, false},
		{"false-positive", "", false, true},
		{"OPEN", "", false, true},
		{"", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseStatus(tt.in)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("ParseStatus(%q) = %q, %v", tt.in, got, err)
			}
			if got.Active() != tt.active {
				t.Fatalf("%q.Active() = %v, want %v", got, got.Active(), tt.active)
			}
			var ve *ValueError
			if tt.wantErr && (!errors.As(err, &ve) || ve.Field != "status") {
				t.Fatalf("error %v: want a *ValueError naming status", err)
			}
		})
	}
}

// A value echoed in an error is cut short: it may come from an upload.
func TestValueErrorTruncates(t *testing.T) {
	long := strings.Repeat("x", 1000)
	_, err := ParseScanKind(long)
	msg := err.Error()
	if want := `invalid kind "` + strings.Repeat("x", 64) + `..." (allowed: external, authenticated, code)`; msg != want {
		t.Fatalf("error = %q, want %q", msg, want)
	}
}

// The JSON shape of a finding is what the message bus carries between
// replicas of different versions: keys are stable and empty optional
// fields stay out.
func TestFindingJSON(t *testing.T) {
	score := 7.5
	f := Finding{
		Fingerprint:       Fingerprint("rule", "r1"),
		FingerprintSource: "computed",
		Scope:             "https://app.example.com",
		Kind:              KindExternal,
		Tool:              "nuclei",
		RuleID:            "r1",
		Title:             "T",
		Location:          Location{Kind: LocationURL, URI: "https://app.example.com/login"},
		Signals:           Signals{Label: "high", Score: &score},
		Severity:          SeverityHigh,
		SeveritySource:    SourceToolScore,
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fingerprint", "fingerprint_source", "scope", "kind", "tool", "rule", "title", "location", "signals", "severity", "severity_source"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %s", k, b)
		}
	}
	for _, k := range []string{"seen_at", "cvss", "controls", "cwe", "cve", "evidence", "suppressed", "tool_version"} {
		if _, ok := m[k]; ok {
			t.Errorf("empty %q present in %s", k, b)
		}
	}
	if m["severity"] != "high" {
		t.Errorf("severity = %v, want the word", m["severity"])
	}

	f.SeenAt = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	b, _ = json.Marshal(f)
	var back Finding
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.SeenAt.Equal(f.SeenAt) || back.Severity != f.Severity || back.Fingerprint != f.Fingerprint ||
		back.Signals.Score == nil || *back.Signals.Score != score || back.Location != f.Location {
		t.Fatalf("round trip: got %+v, want %+v", back, f)
	}
}
