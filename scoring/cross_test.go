package scoring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
)

// randomVector builds a valid vector that exercises the whole grammar: a
// random version, all base metrics, each optional metric absent or set to
// any of its values (X included), in a random order.
func randomVector(rng *rand.Rand, seen map[string]bool) string {
	var parts []string
	for m := range numMetrics {
		d := metrics[m]
		if m >= firstTemporal && rng.IntN(len(d.values)+1) == 0 {
			continue // absent
		}
		val := d.values[rng.IntN(len(d.values))]
		parts = append(parts, d.name+":"+string(val))
		if seen != nil {
			seen[d.name+":"+string(val)] = true
		}
	}
	rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	prefix := "CVSS:3.1/"
	if rng.IntN(3) == 0 {
		prefix = "CVSS:3.0/"
	}
	return prefix + strings.Join(parts, "/")
}

type scores struct{ base, temporal, env float64 }

func goCVSS(t *testing.T, vector string) scores {
	t.Helper()
	if strings.HasPrefix(vector, "CVSS:3.0/") {
		c, err := gocvss30.ParseVector(vector)
		if err != nil {
			t.Fatalf("go-cvss rejects %s: %v", vector, err)
		}
		return scores{c.BaseScore(), c.TemporalScore(), c.EnvironmentalScore()}
	}
	c, err := gocvss31.ParseVector(vector)
	if err != nil {
		t.Fatalf("go-cvss rejects %s: %v", vector, err)
	}
	return scores{c.BaseScore(), c.TemporalScore(), c.EnvironmentalScore()}
}

func ours(t *testing.T, vector string) scores {
	t.Helper()
	v, err := Parse(vector)
	if err != nil {
		t.Fatalf("Parse(%s): %v", vector, err)
	}
	return scores{v.Base(), v.Temporal(), v.Environmental()}
}

func spec(t *testing.T, vector string) scores {
	t.Helper()
	s, err := specScore(vector)
	if err != nil {
		t.Fatal(err)
	}
	return scores(s)
}

// TestCrossCheckRandom compares the package with go-cvss and with the exact
// transcription of the specification on random vectors covering every
// metric value, including X and absent optional metrics.
func TestCrossCheckRandom(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(3, 1))
	seen := map[string]bool{}
	for range n {
		vec := randomVector(rng, seen)
		got, gc, sp := ours(t, vec), goCVSS(t, vec), spec(t, vec)
		if got != sp || got != gc {
			t.Fatalf("%s:\n starpipe %v\n spec     %v\n go-cvss  %v", vec, got, sp, gc)
		}
		// Canonical form parses back to the same scores and agrees with
		// go-cvss's canonical form.
		v, _ := Parse(vec)
		if back := ours(t, v.String()); back != got {
			t.Fatalf("%s -> %s scores %v, want %v", vec, v.String(), back, got)
		}
	}
	for m := range numMetrics {
		for _, val := range metrics[m].values {
			if !seen[metrics[m].name+":"+string(val)] {
				t.Errorf("random vectors never used %s:%c", metrics[m].name, val)
			}
		}
	}
}

// TestCrossCheckAllBase compares every one of the 2,592 base vectors of each
// version, each with a temporal and an environmental variant.
func TestCrossCheckAllBase(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var b strings.Builder
	for _, prefix := range []string{"CVSS:3.1", "CVSS:3.0"} {
		for av := range 4 {
			for ac := range 2 {
				for pr := range 3 {
					for ui := range 2 {
						for s := range 2 {
							for c := range 3 {
								for i := range 3 {
									for a := range 3 {
										b.Reset()
										b.WriteString(prefix)
										for m, x := range []int{av, ac, pr, ui, s, c, i, a} {
											b.WriteString("/" + metrics[m].name + ":" + string(metrics[m].values[x]))
										}
										base := b.String()
										// One random temporal and environmental suffix per
										// base vector so the exhaustive loop also reaches
										// the other formulas.
										extra := randomVector(rng, nil)
										_, tail, _ := strings.Cut(extra, "/")
										var opt []string
										for _, p := range strings.Split(tail, "/") {
											name, _, _ := strings.Cut(p, ":")
											if lookupMetric(name) >= firstTemporal {
												opt = append(opt, p)
											}
										}
										for _, vec := range []string{base, base + "/" + strings.Join(opt, "/")} {
											vec = strings.TrimSuffix(vec, "/")
											got, gc, sp := ours(t, vec), goCVSS(t, vec), spec(t, vec)
											if got != sp || got != gc {
												t.Fatalf("%s:\n starpipe %v\n spec     %v\n go-cvss  %v", vec, got, sp, gc)
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestRoundupMargins justifies two shortcuts: roundup30's noise removal and
// computing powers by repeated multiplication. It enumerates every value
// that reaches a Roundup, for both versions: every base subtotal, every
// environmental subtotal (every combination of the metrics it depends on),
// and every one-decimal score times every product of temporal factors. For
// each value x it checks that
//   - x*100000 is not within 1e-5 of a half-integer, so rounding it to an
//     integer (both versions) cannot flip on floating-point noise, which is
//     about 1e-10 here;
//   - for v3.0, x is either a tenth up to 1e-9 (noise) or at least 1e-5
//     above one, so rounding to 1e-5 before the ceiling removes noise and
//     nothing else.
func TestRoundupMargins(t *testing.T) {
	check := func(ver uint8, what string, x float64) {
		t.Helper()
		y := x * 100000
		if f := y - math.Floor(y); math.Abs(f-0.5) < 1e-5 {
			t.Fatalf("%s: %.17g is too close to a rounding tie", what, x)
		}
		if a := y - 10000*math.Floor(y/10000); ver == v30 && a > 1e-4 && a < 1 {
			t.Fatalf("%s: %.17g is %.3g above a tenth", what, x, a/100000)
		}
	}
	n := 0
	for _, ver := range []uint8{v30, v31} {
		var v Vector
		v.ver = ver
		// Odometer over the eight base metrics, then over CR, IR, AR and
		// the modified metrics (X excluded: a defined modified metric covers
		// the base value it would fall back to).
		for _, span := range [][2]int{{mAV, firstTemporal}, {firstEnv, numMetrics}} {
			v.m = [numMetrics]uint8{}
			skipX := func(m int) uint8 {
				if m >= mMAV {
					return 1
				}
				return 0
			}
			for m := span[0]; m < span[1]; m++ {
				v.m[m] = skipX(m)
			}
			for {
				x, ok := v.baseSubtotal()
				if span[0] != mAV {
					x, ok = v.modifiedSubtotal()
				}
				if ok {
					check(ver, v.String(), x)
					n++
				}
				m := span[0]
				for ; m < span[1]; m++ {
					v.m[m]++
					if int(v.m[m]) < len(metrics[m].values) {
						break
					}
					v.m[m] = skipX(m)
				}
				if m == span[1] {
					break
				}
			}
		}
		for k := 0; k <= 100; k++ {
			for e := range wE {
				for rl := range wRL {
					for rc := range wRC {
						check(ver, "temporal", float64(k)/10*wE[e]*wRL[rl]*wRC[rc])
					}
				}
			}
		}
	}
	if n < 2*(2000+60000) {
		t.Fatalf("only %d subtotals checked", n)
	}
}

// TestRoundup30Exact shows the cases where the naive ceiling of FIRST's
// old v3.0 calculator overstates a score and roundup30 does not.
func TestRoundup30Exact(t *testing.T) {
	for _, base := range []float64{2.5, 5.0, 10.0} {
		x := base * wE[0] * wRL[0] * wRC[3] // RC:U
		exact := specRoundup30(mul(r(fmt.Sprint(base)), r("0.92")))
		want, _ := exact.Float64()
		if naive := math.Ceil(x*10) / 10; naive == want {
			t.Errorf("%v x 0.92: naive ceiling %v is not off; the comment in score.go is stale", base, naive)
		}
		if got := roundup30(x); got != want {
			t.Errorf("%v x 0.92: roundup30 %v, want %v", base, got, want)
		}
	}
	// The same through Parse: base 10.0, RC:U.
	v, err := Parse("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/RC:U")
	if err != nil {
		t.Fatal(err)
	}
	if v.Base() != 10 || v.Temporal() != 9.2 {
		t.Errorf("base %v temporal %v, want 10 9.2", v.Base(), v.Temporal())
	}
}
