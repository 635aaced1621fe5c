package scoring

import (
	"math"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
)

func TestParseEnvironment(t *testing.T) {
	env, err := ParseEnvironment(" MAV:A/CR:H/IR:H/AR:M/MS:X ")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := env.String(), "CR:H/IR:H/AR:M/MAV:A"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if env.IsZero() {
		t.Error("IsZero on a defined environment")
	}
	if z, err := ParseEnvironment(""); err != nil || !z.IsZero() || z.String() != "" {
		t.Errorf("empty fragment: %v %v", z, err)
	}
	for in, want := range map[string]string{
		"AV:N":                  "metric AV: not an environmental metric",
		"E:U":                   "metric E: not an environmental metric",
		"CR:H/CR:L":             "metric CR: defined more than once",
		"CR:Z":                  `metric CR: invalid value (allowed: X, H, M, L): "Z"`,
		"CVSS:3.1/CR:H":         `unknown metric: "CVSS"`,
		"CR:H/":                 "empty metric",
		"cr:h":                  `unknown metric: "cr"`,
		"MPR:H/MAC:L/MAV:N/MX:": `unknown metric: "MX"`,
	} {
		if _, err := ParseEnvironment(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseEnvironment(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestWith(t *testing.T) {
	v, _ := Parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/CR:L/MAV:P")
	env, _ := ParseEnvironment("CR:H/IR:L/MC:L")
	got := v.With(env).String()
	// The environment's CR wins; the vector's MAV stays; E is untouched.
	want := "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/CR:H/IR:L/MAV:P/MC:L"
	if got != want {
		t.Errorf("With = %s, want %s", got, want)
	}
	if v.With(Environment{}) != v {
		t.Error("zero Environment changed the vector")
	}
}

func ptr(f float64) *float64 { return &f }

func TestApply(t *testing.T) {
	const crit = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
	lowCtx, _ := ParseEnvironment("CR:L/IR:L/AR:L/MAV:P")
	for _, tc := range []struct {
		name    string
		signals finding.Signals
		env     *Environment
		sev     finding.Severity
		src     finding.SeveritySource
		cvss    *finding.CVSS
	}{
		{"vector wins over everything", finding.Signals{Vector: crit, Score: ptr(1), Label: "low", Level: "note"}, nil,
			finding.SeverityCritical, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit, Base: 9.8, Temporal: 9.8, Environmental: 9.8}},
		{"vector with spaces", finding.Signals{Vector: "  " + crit + "\n"}, nil,
			finding.SeverityCritical, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit, Base: 9.8, Temporal: 9.8, Environmental: 9.8}},
		{"bare vector is 3.1", finding.Signals{Vector: "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}, nil,
			finding.SeverityCritical, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit, Base: 9.8, Temporal: 9.8, Environmental: 9.8}},
		{"temporal vector rates temporal", finding.Signals{Vector: crit + "/E:U/RL:O/RC:U"}, nil,
			finding.SeverityHigh, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit + "/E:U/RL:O/RC:U", Base: 9.8, Temporal: 7.8, Environmental: 7.8}},
		// MISS 1-0.72^3 = 0.626752, impact 4.02374784, exploitability
		// 0.9145983, sum 4.93834614 -> 5.0.
		{"context lowers severity", finding.Signals{Vector: crit}, &lowCtx,
			finding.SeverityMedium, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit + "/CR:L/IR:L/AR:L/MAV:P", Base: 9.8, Temporal: 9.8, Environmental: 5.0, Contextual: true}},
		{"zero context is no context", finding.Signals{Vector: crit}, &Environment{},
			finding.SeverityCritical, finding.SourceVector,
			&finding.CVSS{Version: "3.1", Vector: crit, Base: 9.8, Temporal: 9.8, Environmental: 9.8}},
		{"invalid vector falls to score", finding.Signals{Vector: "CVSS:3.1/AV:N", Score: ptr(7.0)}, nil,
			finding.SeverityHigh, finding.SourceToolScore, nil},
		{"CVSS v2 vector falls to label", finding.Signals{Vector: "AV:N/AC:L/Au:N/C:P/I:P/A:P", Label: "medium"}, nil,
			finding.SeverityMedium, finding.SourceToolSeverity, nil},
		{"score 9.0 critical", finding.Signals{Score: ptr(9.0)}, nil, finding.SeverityCritical, finding.SourceToolScore, nil},
		{"score 6.99 medium", finding.Signals{Score: ptr(6.99)}, nil, finding.SeverityMedium, finding.SourceToolScore, nil},
		{"score 0.1 low", finding.Signals{Score: ptr(0.1)}, nil, finding.SeverityLow, finding.SourceToolScore, nil},
		{"score 0.05 info", finding.Signals{Score: ptr(0.05)}, nil, finding.SeverityInfo, finding.SourceToolScore, nil},
		{"score out of range falls through", finding.Signals{Score: ptr(11), Label: "high"}, nil, finding.SeverityHigh, finding.SourceToolSeverity, nil},
		{"NaN score falls through", finding.Signals{Score: ptr(math.NaN()), Level: "error"}, nil, finding.SeverityHigh, finding.SourceToolLevel, nil},
		{"label", finding.Signals{Label: "Critical"}, nil, finding.SeverityCritical, finding.SourceToolSeverity, nil},
		{"unknown label falls to level", finding.Signals{Label: "unknown", Level: "warning"}, nil, finding.SeverityMedium, finding.SourceToolLevel, nil},
		{"level note", finding.Signals{Level: "note"}, nil, finding.SeverityLow, finding.SourceToolLevel, nil},
		{"level none", finding.Signals{Level: "none"}, nil, finding.SeverityInfo, finding.SourceToolLevel, nil},
		{"level error", finding.Signals{Level: "error"}, nil, finding.SeverityHigh, finding.SourceToolLevel, nil},
		{"nothing", finding.Signals{}, nil, DefaultSeverity, finding.SourceDefault, nil},
		{"bogus level", finding.Signals{Level: "fatal"}, nil, DefaultSeverity, finding.SourceDefault, nil},
	} {
		f := finding.Finding{Signals: tc.signals, CVSS: &finding.CVSS{Vector: "stale"}}
		Apply(&f, tc.env)
		if f.Severity != tc.sev || f.SeveritySource != tc.src {
			t.Errorf("%s: severity %v from %v, want %v from %v", tc.name, f.Severity, f.SeveritySource, tc.sev, tc.src)
		}
		switch {
		case tc.cvss == nil && f.CVSS != nil:
			t.Errorf("%s: CVSS %+v, want nil", tc.name, *f.CVSS)
		case tc.cvss != nil && (f.CVSS == nil || *f.CVSS != *tc.cvss):
			t.Errorf("%s: CVSS %+v, want %+v", tc.name, f.CVSS, *tc.cvss)
		}
		if f.SeveritySource.Measured() != (tc.src == finding.SourceVector) {
			t.Errorf("%s: Measured() wrong", tc.name)
		}
	}
}
