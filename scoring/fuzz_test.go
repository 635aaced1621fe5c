package scoring

import (
	"math"
	"testing"
)

// FuzzParse: no panic on any input; whatever parses prints canonically and
// parses back to the same vector and scores; scores are one-decimal values
// in [0, 10]. ParseTolerant and ParseEnvironment share the parser and get
// the same treatment.
func FuzzParse(f *testing.F) {
	for _, tc := range readTestdata(f) {
		f.Add(tc.vector)
	}
	f.Add("CR:H/IR:L/MAV:N")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err == nil {
			checkRoundTrip(t, s, v)
			tv, terr := ParseTolerant(s)
			if terr != nil || tv != v {
				t.Fatalf("ParseTolerant(%q) = %v, %v; Parse accepted it", s, tv, terr)
			}
		} else if v != (Vector{}) || err.Error() == "" {
			t.Fatalf("Parse(%q): non-zero vector or empty message with error %v", s, err)
		}
		if tv, err := ParseTolerant(s); err == nil {
			checkRoundTrip(t, s, tv)
		}
		if env, err := ParseEnvironment(s); err == nil {
			back, err := ParseEnvironment(env.String())
			if err != nil || back != env {
				t.Fatalf("ParseEnvironment(%q).String() = %q does not parse back: %v", s, env.String(), err)
			}
		}
	})
}

func checkRoundTrip(t *testing.T, in string, v Vector) {
	t.Helper()
	out := v.String()
	if len(out) > maxVectorLen {
		t.Fatalf("String() of %q is %d bytes, more than %d", in, len(out), maxVectorLen)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(%q) ok but its String %q fails: %v", in, out, err)
	}
	if back != v || back.Base() != v.Base() || back.Temporal() != v.Temporal() || back.Environmental() != v.Environmental() {
		t.Fatalf("%q -> %q: scores differ", in, out)
	}
	for _, s := range []float64{v.Base(), v.Temporal(), v.Environmental()} {
		if s < 0 || s > 10 || math.Abs(s*10-math.Round(s*10)) > 1e-9 {
			t.Fatalf("%q: score %v is not a one-decimal value in [0, 10]", in, s)
		}
	}
}
