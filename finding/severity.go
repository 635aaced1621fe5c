package finding

import "strings"

// Severity is a qualitative rating. The zero value is SeverityInfo, which is
// also what CVSS calls None.
type Severity uint8

const (
	SeverityInfo Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "unknown"
}

// Severities lists every severity from lowest to highest.
func Severities() []Severity {
	return []Severity{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}
}

// ParseSeverity reads a severity word as tools write it, case-insensitively.
// "none", "informational" and "info" are SeverityInfo; "moderate" is medium;
// "important" is high. ok is false for anything else (including "unknown").
func ParseSeverity(s string) (Severity, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "info", "informational", "information", "none", "note":
		return SeverityInfo, true
	case "low", "minor":
		return SeverityLow, true
	case "medium", "moderate":
		return SeverityMedium, true
	case "high", "important", "major":
		return SeverityHigh, true
	case "critical", "blocker":
		return SeverityCritical, true
	}
	return SeverityInfo, false
}

// MarshalText writes the lower-case name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText accepts the names ParseSeverity accepts.
func (s *Severity) UnmarshalText(b []byte) error {
	v, ok := ParseSeverity(string(b))
	if !ok {
		return &ValueError{Field: "severity", Value: string(b), Allowed: "info, low, medium, high, critical"}
	}
	*s = v
	return nil
}

// SeveritySource records which signal a severity came from, so reviewers can
// tell a measured severity (a CVSS vector) from an estimated one.
type SeveritySource string

const (
	SourceVector       SeveritySource = "vector"        // computed from a CVSS vector
	SourceToolScore    SeveritySource = "tool-score"    // a numeric score the tool reported
	SourceToolSeverity SeveritySource = "tool-severity" // the tool's own severity label
	SourceToolLevel    SeveritySource = "tool-level"    // SARIF level, the weakest signal
	SourceDefault      SeveritySource = "default"       // no signal at all
)

// Measured reports whether the severity was computed rather than estimated.
func (s SeveritySource) Measured() bool { return s == SourceVector }
