package scoring

import (
	"math"
	"strings"

	"github.com/starpipe/starpipe/finding"
)

// DefaultSeverity is what Apply gives a finding that carries no usable
// signal at all. It is medium rather than info because an unrated finding is
// an unknown, not a known-harmless one: medium gives it an SLA deadline and
// puts it in front of a reviewer, who can lower it, while info would hide it
// from every count in the cadence report. It also matches SARIF, whose level
// defaults to "warning" when a result omits it. The SourceDefault source
// marks it as an estimate.
const DefaultSeverity = finding.SeverityMedium

// Apply sets f.CVSS, f.Severity and f.SeveritySource from f.Signals, taking
// the first usable signal in this order:
//
//  1. vector: f.Signals.Vector, read with ParseTolerant (surrounding spaces
//     and a bare "AV:N/..." vector, read as v3.1, are accepted). A vector
//     that does not parse is skipped, not an error: the tool's other signals
//     still say something.
//  2. tool-score: f.Signals.Score between 0 and 10, rated with GitHub's
//     thresholds for security-severity (those of Rating).
//  3. tool-severity: f.Signals.Label, read by finding.ParseSeverity.
//  4. tool-level: f.Signals.Level, the SARIF level (see levelSeverity).
//  5. default: DefaultSeverity.
//
// With a vector and a non-zero env, the environmental score is computed with
// env overlaid on the vector (see Vector.With), f.CVSS.Contextual is set and
// the severity follows the environmental score. f.CVSS.Vector is then the
// overlaid vector in canonical form, so that anyone can reproduce all three
// stored scores from it in FIRST's calculator; the base and temporal metrics
// are the tool's. Without context the severity is Vector.Severity.
func Apply(f *finding.Finding, env *Environment) {
	f.CVSS = nil
	if f.Signals.Vector != "" {
		if v, err := ParseTolerant(f.Signals.Vector); err == nil {
			contextual := env != nil && !env.IsZero()
			if contextual {
				v = v.With(*env)
			}
			f.CVSS = &finding.CVSS{
				Version:       v.Version(),
				Vector:        v.String(),
				Base:          v.Base(),
				Temporal:      v.Temporal(),
				Environmental: v.Environmental(),
				Contextual:    contextual,
			}
			if contextual {
				f.Severity = Rating(f.CVSS.Environmental)
			} else {
				f.Severity = v.Severity()
			}
			f.SeveritySource = finding.SourceVector
			return
		}
	}
	// A score outside [0, 10] (or NaN) is not a CVSS score; trust the next
	// signal instead of clamping it into one.
	if s := f.Signals.Score; s != nil && *s >= 0 && *s <= 10 && !math.IsNaN(*s) {
		f.Severity, f.SeveritySource = Rating(*s), finding.SourceToolScore
		return
	}
	if sev, ok := finding.ParseSeverity(f.Signals.Label); ok {
		f.Severity, f.SeveritySource = sev, finding.SourceToolSeverity
		return
	}
	if sev, ok := levelSeverity(f.Signals.Level); ok {
		f.Severity, f.SeveritySource = sev, finding.SourceToolLevel
		return
	}
	f.Severity, f.SeveritySource = DefaultSeverity, finding.SourceDefault
}

// levelSeverity maps a SARIF result level to a severity. SARIF levels say
// how sure and how loud a tool is, not how bad the issue is, so this is the
// weakest signal and the mapping is deliberately one step cautious rather
// than generous: "error" (the tool says the result must be fixed) is high,
// not critical, since nothing in a level measures impact; "warning" is
// medium; "note" (worth knowing) is low; "none" is info. An empty level is
// not guessed here: SARIF's default of "warning" for an absent level is the
// SARIF parser's to apply, because other tools have no level at all.
func levelSeverity(level string) (finding.Severity, bool) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "error":
		return finding.SeverityHigh, true
	case "warning":
		return finding.SeverityMedium, true
	case "note":
		return finding.SeverityLow, true
	case "none":
		return finding.SeverityInfo, true
	}
	return finding.SeverityInfo, false
}
