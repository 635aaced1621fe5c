package scoring

import (
	"math"

	"github.com/starpipe/starpipe/finding"
)

// Metric weights from section 7.4 of the CVSS v3.1 specification (the same
// in v3.0), indexed like metrics[m].values.
var (
	wAV  = [...]float64{0.85, 0.62, 0.55, 0.2}  // N A L P
	wAC  = [...]float64{0.77, 0.44}             // L H
	wPRU = [...]float64{0.85, 0.62, 0.27}       // N L H, scope unchanged
	wPRC = [...]float64{0.85, 0.68, 0.5}        // N L H, scope changed
	wUI  = [...]float64{0.85, 0.62}             // N R
	wCIA = [...]float64{0.56, 0.22, 0}          // H L N
	wE   = [...]float64{1, 1, 0.97, 0.94, 0.91} // X H F P U
	wRL  = [...]float64{1, 1, 0.97, 0.96, 0.95} // X U W T O
	wRC  = [...]float64{1, 1, 0.96, 0.92}       // X C R U
	wReq = [...]float64{1, 1.5, 1, 0.5}         // X H M L
)

const scopeChanged = 1 // index of C in "UC"

// The formulas below follow FIRST's reference calculators (cvsscalc30.js and
// cvsscalc31.js) operation by operation, not just algebraically: floating
// point is not associative, and with v3.0's Roundup a difference in the last
// bit can move a score by 0.1. The cross-check tests compare against a
// separate transcription of the specification and against go-cvss.

// Base returns the base score.
func (v Vector) Base() float64 {
	if v.ver == 0 {
		return 0
	}
	return v.base()
}

func (v Vector) base() float64 {
	x, ok := v.baseSubtotal()
	if !ok {
		return 0
	}
	return v.roundup(x)
}

// baseSubtotal is the base score before Roundup; ok is false when the impact
// is not positive (the score is then 0).
func (v Vector) baseSubtotal() (x float64, ok bool) {
	changed := v.m[mS] == scopeChanged
	pr := wPRU[v.m[mPR]]
	if changed {
		pr = wPRC[v.m[mPR]]
	}
	exploitability := 8.22 * wAV[v.m[mAV]] * wAC[v.m[mAC]] * pr * wUI[v.m[mUI]]
	iss := 1 - ((1 - wCIA[v.m[mC]]) * (1 - wCIA[v.m[mI]]) * (1 - wCIA[v.m[mA]]))
	var impact float64
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*pow15(iss-0.02)
	} else {
		impact = 6.42 * iss
	}
	if impact <= 0 {
		return 0, false
	}
	if changed {
		return min10((exploitability + impact) * 1.08), true
	}
	return min10(exploitability + impact), true
}

// Temporal returns the temporal score. With no temporal metric it equals the
// base score, as in FIRST's calculator.
func (v Vector) Temporal() float64 {
	if v.ver == 0 {
		return 0
	}
	return v.roundup(v.base() * wE[v.m[mE]] * wRL[v.m[mRL]] * wRC[v.m[mRC]])
}

// mod returns the index of the base value that modified metric mm stands for:
// the modified value when defined, otherwise the base metric's own.
func (v Vector) mod(base, mm int) uint8 {
	if x := v.m[mm]; x != 0 {
		return x - 1
	}
	return v.m[base]
}

// Environmental returns the environmental score. With no environmental
// metric it is what FIRST's calculator shows: the modified formulas with
// every modified metric taken from the base metrics (for a v3.1 vector with
// a changed scope this can differ from the base score, because v3.1 changed
// the modified impact formula but not the base one).
func (v Vector) Environmental() float64 {
	if v.ver == 0 {
		return 0
	}
	x, ok := v.modifiedSubtotal()
	if !ok {
		return 0
	}
	return v.roundup(v.roundup(x) * wE[v.m[mE]] * wRL[v.m[mRL]] * wRC[v.m[mRC]])
}

// modifiedSubtotal is the environmental score before its inner Roundup and
// the temporal factors; ok is false when the modified impact is not positive
// (the score is then 0).
func (v Vector) modifiedSubtotal() (x float64, ok bool) {
	changed := v.mod(mS, mMS) == scopeChanged
	mpr := v.mod(mPR, mMPR)
	pr := wPRU[mpr]
	if changed {
		pr = wPRC[mpr]
	}
	exploitability := 8.22 * wAV[v.mod(mAV, mMAV)] * wAC[v.mod(mAC, mMAC)] * pr * wUI[v.mod(mUI, mMUI)]
	miss := 1 - ((1 - wCIA[v.mod(mC, mMC)]*wReq[v.m[mCR]]) *
		(1 - wCIA[v.mod(mI, mMI)]*wReq[v.m[mIR]]) *
		(1 - wCIA[v.mod(mA, mMA)]*wReq[v.m[mAR]]))
	if miss > 0.915 {
		miss = 0.915
	}
	var impact float64
	switch {
	case !changed:
		impact = 6.42 * miss
	case v.ver == v30:
		impact = 7.52*(miss-0.029) - 3.25*pow15(miss-0.02)
	default:
		impact = 7.52*(miss-0.029) - 3.25*pow13(miss*0.9731-0.02)
	}
	if impact <= 0 {
		return 0, false
	}
	if changed {
		return min10(1.08 * (impact + exploitability)), true
	}
	return min10(impact + exploitability), true
}

// Severity returns the rating of the most specific score the vector defines:
// environmental if it has an environmental metric, else temporal if it has a
// temporal metric, else base.
func (v Vector) Severity() finding.Severity {
	switch {
	case v.HasEnvironmental():
		return Rating(v.Environmental())
	case v.HasTemporal():
		return Rating(v.Temporal())
	}
	return Rating(v.Base())
}

func (v Vector) roundup(x float64) float64 {
	if v.ver == v30 {
		return roundup30(x)
	}
	return roundup31(x)
}

// roundup30 is v3.0's Roundup, "the smallest number, specified to one
// decimal place, that is equal to or higher than its input", where the input
// is the exact value of the formula. A naive math.Ceil(x*10)/10 (what FIRST's
// old v3.0 JavaScript calculator does) takes floating-point noise for a real
// excess and overstates some scores by 0.1: 5.0 x RC:U = 4.6 comes out as
// 4.6000000000000005 and then 4.7. The v3.1 specification's Appendix A
// describes exactly this defect. So the noise is removed first, by rounding
// to 1e-5, before taking the ceiling. That is safe: the tests show, over
// every input a v3.0 vector can produce, that no exact value lies above a
// tenth by less than 1e-5 (the closest is 3e-5), and that the result equals
// the ceiling computed in exact rational arithmetic.
func roundup30(x float64) float64 {
	return math.Ceil(math.Round(x*100000)/10000) / 10
}

// roundup31 is Appendix A of the v3.1 specification: integer arithmetic on
// x scaled by 100000, so that floating-point noise such as
// 4.000000000000001 does not round up to 4.1. math.Round rounds half away
// from zero, which for these non-negative inputs is JavaScript's Math.round
// used by FIRST's calculator.
func roundup31(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	return float64(i/10000+1) / 10
}

// pow15 and pow13 are x^15 and x^13 by repeated squaring, several times
// faster than math.Pow. Their last-bit differences from JavaScript's
// Math.pow in FIRST's calculators cannot change a score: the tests check,
// over every subtotal a vector can produce, that none lies within 1e-10 of a
// point where Roundup changes its result.
func pow15(x float64) float64 {
	x2 := x * x
	x4 := x2 * x2
	return x4 * x4 * x4 * x2 * x
}

func pow13(x float64) float64 {
	x2 := x * x
	x4 := x2 * x2
	return x4 * x4 * x4 * x
}

// min10 is math.Min(x, 10) without math.Min's NaN and signed-zero handling,
// which these finite, positive subtotals do not need.
func min10(x float64) float64 {
	if x > 10 {
		return 10
	}
	return x
}

// Rating returns the qualitative severity rating of a CVSS score (table 14
// of the specification): 0 is None (finding.SeverityInfo), 0.1-3.9 Low,
// 4.0-6.9 Medium, 7.0-8.9 High, 9.0-10.0 Critical. The same thresholds are
// GitHub's convention for SARIF security-severity, so Apply uses it for tool
// scores too. Scores in between (3.95) take the lower rating; negative or NaN
// scores are None.
func Rating(score float64) finding.Severity {
	switch {
	case score >= 9.0:
		return finding.SeverityCritical
	case score >= 7.0:
		return finding.SeverityHigh
	case score >= 4.0:
		return finding.SeverityMedium
	case score >= 0.1:
		return finding.SeverityLow
	}
	return finding.SeverityInfo
}

// RatingName returns a severity as the CVSS specification names it: None,
// Low, Medium, High or Critical.
func RatingName(s finding.Severity) string {
	switch s {
	case finding.SeverityLow:
		return "Low"
	case finding.SeverityMedium:
		return "Medium"
	case finding.SeverityHigh:
		return "High"
	case finding.SeverityCritical:
		return "Critical"
	}
	return "None"
}
