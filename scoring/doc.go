// Package scoring turns what scanners say about severity into a finding's
// CVSS scores and severity.
//
// Parse reads CVSS v3.1 and v3.0 vectors strictly, as the specification
// writes them, and a Vector computes base, temporal and environmental scores
// exactly as FIRST's specification and reference calculator do (v3.0 vectors
// with the v3.0 formulas). An Environment carries a scope's security
// requirements and modified base metrics; Vector.With overlays it.
//
// Apply picks a finding's severity from the strongest signal the tool gave
// (a vector, then a numeric score, then the tool's label, then SARIF level)
// and records which one in finding.SeveritySource, so that a reviewer can
// tell a measured severity from an estimated one.
package scoring
