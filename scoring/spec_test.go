package scoring

import (
	"fmt"
	"math/big"
	"strings"
)

// This file is a second, deliberately different transcription of the
// formulas in section 7 and Appendix A of the CVSS v3.1 specification (and
// section 8 of v3.0 for its differences), written from the specification
// text without score.go's tables or code: weights as decimal strings in maps
// keyed by the letters, the pseudocode's own names, and exact rational
// arithmetic (math/big.Rat) so that no floating-point effect can hide in
// both implementations at once. The cross-check tests require it, go-cvss
// and the package to agree.

var specWeights = map[string]map[string]string{
	"AV": {"N": "0.85", "A": "0.62", "L": "0.55", "P": "0.2"},
	"AC": {"L": "0.77", "H": "0.44"},
	"UI": {"N": "0.85", "R": "0.62"},
	"C":  {"H": "0.56", "L": "0.22", "N": "0"},
	"I":  {"H": "0.56", "L": "0.22", "N": "0"},
	"A":  {"H": "0.56", "L": "0.22", "N": "0"},
	"E":  {"X": "1", "H": "1", "F": "0.97", "P": "0.94", "U": "0.91"},
	"RL": {"X": "1", "U": "1", "W": "0.97", "T": "0.96", "O": "0.95"},
	"RC": {"X": "1", "C": "1", "R": "0.96", "U": "0.92"},
	"CR": {"X": "1", "H": "1.5", "M": "1", "L": "0.5"},
	"IR": {"X": "1", "H": "1.5", "M": "1", "L": "0.5"},
	"AR": {"X": "1", "H": "1.5", "M": "1", "L": "0.5"},
}

// Privileges Required: its weight depends on the scope.
var specPRWeights = map[string]map[string]string{
	"U": {"N": "0.85", "L": "0.62", "H": "0.27"},
	"C": {"N": "0.85", "L": "0.68", "H": "0.5"},
}

// r reads an exact decimal.
func r(decimal string) *big.Rat {
	x, ok := new(big.Rat).SetString(decimal)
	if !ok {
		panic("bad decimal " + decimal)
	}
	return x
}

// Small helpers so the formulas below read like the specification.
func mul(xs ...*big.Rat) *big.Rat {
	p := r("1")
	for _, x := range xs {
		p = new(big.Rat).Mul(p, x)
	}
	return p
}
func sub(a, b *big.Rat) *big.Rat { return new(big.Rat).Sub(a, b) }
func add(a, b *big.Rat) *big.Rat { return new(big.Rat).Add(a, b) }
func minimum(a, b *big.Rat) *big.Rat {
	if a.Cmp(b) < 0 {
		return a
	}
	return b
}
func power(x *big.Rat, n int) *big.Rat {
	p := r("1")
	for range n {
		p = mul(p, x)
	}
	return p
}
func floorRat(x *big.Rat) *big.Int { // for x >= 0
	return new(big.Int).Quo(x.Num(), x.Denom())
}

// specRoundup31 is Appendix A of the v3.1 specification:
//
//	int_input = round_to_nearest_integer(input * 100000)
//	if (int_input % 10000) == 0: return int_input / 100000.0
//	else: return (floor(int_input / 10000) + 1) / 10.0
func specRoundup31(input *big.Rat) *big.Rat {
	scaled := mul(input, r("100000"))
	intInput := floorRat(add(scaled, r("0.5"))) // nearest, halves up
	if new(big.Int).Rem(intInput, big.NewInt(10000)).Sign() == 0 {
		return new(big.Rat).SetFrac(intInput, big.NewInt(100000))
	}
	q := new(big.Int).Quo(intInput, big.NewInt(10000))
	return new(big.Rat).SetFrac(q.Add(q, big.NewInt(1)), big.NewInt(10))
}

// specRoundup30 is v3.0's Roundup: "the smallest number, specified to one
// decimal place, that is equal to or higher than its input".
func specRoundup30(input *big.Rat) *big.Rat {
	tenths := mul(input, r("10"))
	c := floorRat(tenths)
	if new(big.Rat).SetInt(c).Cmp(tenths) < 0 {
		c.Add(c, big.NewInt(1))
	}
	return new(big.Rat).SetFrac(c, big.NewInt(10))
}

type specScores struct{ base, temporal, env float64 }

// specScore scores a vector given as text with the specification formulas.
// It trusts the vector to be valid: validation is tested elsewhere.
func specScore(vector string) (specScores, error) {
	prefix, rest, ok := strings.Cut(vector, "/")
	if !ok || (prefix != "CVSS:3.1" && prefix != "CVSS:3.0") {
		return specScores{}, fmt.Errorf("bad prefix in %q", vector)
	}
	v30 := prefix == "CVSS:3.0"
	Roundup := specRoundup31
	if v30 {
		Roundup = specRoundup30
	}
	mv := map[string]string{}
	for _, part := range strings.Split(rest, "/") {
		k, val, _ := strings.Cut(part, ":")
		mv[k] = val
	}
	// Optional metrics that are absent are Not Defined (X).
	for _, k := range []string{"E", "RL", "RC", "CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA"} {
		if mv[k] == "" {
			mv[k] = "X"
		}
	}
	w := func(metric string) *big.Rat { return r(specWeights[metric][mv[metric]]) }

	// 7.1 Base metrics equations.
	ISS := sub(r("1"), mul(sub(r("1"), w("C")), sub(r("1"), w("I")), sub(r("1"), w("A"))))
	var Impact *big.Rat
	if mv["S"] == "U" {
		Impact = mul(r("6.42"), ISS)
	} else {
		Impact = sub(mul(r("7.52"), sub(ISS, r("0.029"))), mul(r("3.25"), power(sub(ISS, r("0.02")), 15)))
	}
	Exploitability := mul(r("8.22"), w("AV"), w("AC"), r(specPRWeights[mv["S"]][mv["PR"]]), w("UI"))
	var BaseScore *big.Rat
	switch {
	case Impact.Sign() <= 0:
		BaseScore = r("0")
	case mv["S"] == "U":
		BaseScore = Roundup(minimum(add(Impact, Exploitability), r("10")))
	default:
		BaseScore = Roundup(minimum(mul(r("1.08"), add(Impact, Exploitability)), r("10")))
	}

	// 7.2 Temporal metrics equations.
	TemporalScore := Roundup(mul(BaseScore, w("E"), w("RL"), w("RC")))

	// 7.3 Environmental metrics equations. A modified metric that is Not
	// Defined takes the value of the base metric it modifies.
	modified := func(metric string) string {
		if val := mv["M"+metric]; val != "X" {
			return val
		}
		return mv[metric]
	}
	mw := func(metric string) *big.Rat { return r(specWeights[metric][modified(metric)]) }
	MS := modified("S")
	MISS := minimum(sub(r("1"), mul(
		sub(r("1"), mul(w("CR"), mw("C"))),
		sub(r("1"), mul(w("IR"), mw("I"))),
		sub(r("1"), mul(w("AR"), mw("A"))))), r("0.915"))
	var ModifiedImpact *big.Rat
	switch {
	case MS == "U":
		ModifiedImpact = mul(r("6.42"), MISS)
	case v30:
		ModifiedImpact = sub(mul(r("7.52"), sub(MISS, r("0.029"))), mul(r("3.25"), power(sub(MISS, r("0.02")), 15)))
	default:
		ModifiedImpact = sub(mul(r("7.52"), sub(MISS, r("0.029"))), mul(r("3.25"), power(sub(mul(MISS, r("0.9731")), r("0.02")), 13)))
	}
	ModifiedExploitability := mul(r("8.22"), mw("AV"), mw("AC"), r(specPRWeights[MS][modified("PR")]), mw("UI"))
	var EnvironmentalScore *big.Rat
	switch {
	case ModifiedImpact.Sign() <= 0:
		EnvironmentalScore = r("0")
	case MS == "U":
		EnvironmentalScore = Roundup(mul(Roundup(minimum(add(ModifiedImpact, ModifiedExploitability), r("10"))), w("E"), w("RL"), w("RC")))
	default:
		EnvironmentalScore = Roundup(mul(Roundup(minimum(mul(r("1.08"), add(ModifiedImpact, ModifiedExploitability)), r("10"))), w("E"), w("RL"), w("RC")))
	}
	f := func(x *big.Rat) float64 { v, _ := x.Float64(); return v }
	return specScores{f(BaseScore), f(TemporalScore), f(EnvironmentalScore)}, nil
}
