package finding

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func TestParseSeverity(t *testing.T) {
	tests := []struct {
		in   string
		want Severity
		ok   bool
	}{
		{"info", SeverityInfo, true},
		{"informational", SeverityInfo, true},
		{"information", SeverityInfo, true},
		{"none", SeverityInfo, true},
		{"note", SeverityInfo, true},
		{"low", SeverityLow, true},
		{"minor", SeverityLow, true},
		{"medium", SeverityMedium, true},
		{"moderate", SeverityMedium, true},
		{"high", SeverityHigh, true},
		{"important", SeverityHigh, true},
		{"major", SeverityHigh, true},
		{"critical", SeverityCritical, true},
		{"blocker", SeverityCritical, true},
		{"CRITICAL", SeverityCritical, true},
		{"  High\n", SeverityHigh, true},
		{"Moderate", SeverityMedium, true},
		{"unknown", SeverityInfo, false},
		{"", SeverityInfo, false},
		{"crit", SeverityInfo, false},
		{"5", SeverityInfo, false},
		{"high-ish", SeverityInfo, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseSeverity(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseSeverity(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// Severities sort by their values (SLA policies, filters and "at least
// high" queries compare them), and every one has a name that parses back.
func TestSeverityOrder(t *testing.T) {
	all := Severities()
	want := []string{"info", "low", "medium", "high", "critical"}
	if len(all) != len(want) {
		t.Fatalf("Severities() = %v", all)
	}
	for i, s := range all {
		if s.String() != want[i] {
			t.Errorf("Severities()[%d] = %s, want %s", i, s, want[i])
		}
		if i > 0 && !(all[i-1] < s) {
			t.Errorf("%s is not above %s", s, all[i-1])
		}
		back, ok := ParseSeverity(s.String())
		if !ok || back != s {
			t.Errorf("ParseSeverity(%q) = %v, %v", s.String(), back, ok)
		}
	}
	if !slices.IsSorted(all) {
		t.Errorf("Severities() not ascending: %v", all)
	}
	var zero Severity
	if zero != SeverityInfo {
		t.Errorf("zero Severity = %s, want info", zero)
	}
	if got := Severity(42).String(); got != "unknown" {
		t.Errorf("Severity(42).String() = %q, want unknown", got)
	}
}

func TestSeverityText(t *testing.T) {
	type doc struct {
		S Severity `json:"s"`
	}
	for _, s := range Severities() {
		b, err := json.Marshal(doc{s})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"s":"` + s.String() + `"}`; string(b) != want {
			t.Errorf("marshal %v = %s, want %s", s, b, want)
		}
		var d doc
		if err := json.Unmarshal(b, &d); err != nil || d.S != s {
			t.Errorf("round trip of %s: %v, %v", b, d.S, err)
		}
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"s":"Important"}`), &d); err != nil || d.S != SeverityHigh {
		t.Errorf("unmarshal a tool word: %v, %v", d.S, err)
	}
	err := json.Unmarshal([]byte(`{"s":"severe"}`), &d)
	var ve *ValueError
	if !errors.As(err, &ve) || ve.Field != "severity" || ve.Value != "severe" {
		t.Fatalf("unmarshal an unknown word: %v, want a *ValueError for severity", err)
	}
	want := `invalid severity "severe" (allowed: info, low, medium, high, critical)`
	if ve.Error() != want {
		t.Errorf("error = %q, want %q", ve.Error(), want)
	}
}

func TestSeveritySourceMeasured(t *testing.T) {
	for _, tt := range []struct {
		s    SeveritySource
		want bool
	}{
		{SourceVector, true},
		{SourceToolScore, false},
		{SourceToolSeverity, false},
		{SourceToolLevel, false},
		{SourceDefault, false},
		{"", false},
	} {
		if got := tt.s.Measured(); got != tt.want {
			t.Errorf("%q.Measured() = %v, want %v", tt.s, got, tt.want)
		}
	}
}
