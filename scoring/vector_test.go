package scoring

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/finding"
)

// firstExamples are base scores published in FIRST's "CVSS v3.1 Examples"
// (and, with the same scores, "CVSS v3.0 Examples").
var firstExamples = []struct {
	name, vector string
	base         float64
}{
	{"CVE-2013-1937 phpMyAdmin XSS", "AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1},
	{"CVE-2013-0375 MySQL SQLi", "AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4},
	{"CVE-2014-3566 SSLv3 POODLE", "AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1},
	{"CVE-2012-1516 VMware guest escape", "AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9},
	{"CVE-2009-0783 Apache Tomcat XML parser", "AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L", 4.2},
	{"CVE-2012-0384 Cisco IOS", "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8},
	{"CVE-2015-1098 Apple iWork", "AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8},
	{"CVE-2014-0160 Heartbleed", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5},
	{"CVE-2014-6271 Shellshock", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8},
	{"CVE-2008-1447 DNS cache poisoning", "AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8},
	{"CVE-2014-2005 Sophos disk encryption", "AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8},
	{"CVE-2010-0467 Joomla directory traversal", "AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8},
	{"CVE-2012-1342 Cisco ASA ACL bypass", "AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:L/A:N", 5.8},
	{"CVE-2013-6014 Juniper proxy ARP", "AV:A/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:H", 9.3},
	{"CVE-2016-1645 Chrome PDFium", "AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8},
}

func TestFIRSTExamples(t *testing.T) {
	for _, ex := range firstExamples {
		for _, prefix := range []string{"CVSS:3.1/", "CVSS:3.0/"} {
			v, err := Parse(prefix + ex.vector)
			if err != nil {
				t.Fatalf("%s: %v", ex.name, err)
			}
			if got := v.Base(); got != ex.base {
				t.Errorf("%s %s: base %v, want %v", ex.name, prefix, got, ex.base)
			}
			// Without temporal metrics the temporal score is the base score.
			if got := v.Temporal(); got != ex.base {
				t.Errorf("%s %s: temporal %v, want %v", ex.name, prefix, got, ex.base)
			}
			if got, want := v.Severity(), Rating(ex.base); got != want {
				t.Errorf("%s: severity %v, want %v", ex.name, got, want)
			}
		}
	}
}

// TestKnownScores pins temporal and environmental scores worked out by hand
// from the specification (and agreed by the cross-checks).
func TestKnownScores(t *testing.T) {
	for _, tc := range []struct {
		vector   string
		b, t, e  float64
		severity finding.Severity
	}{
		// 9.8 x 0.91 x 0.95 x 0.92 = 7.794332 -> 7.8.
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:U", 9.8, 7.8, 7.8, finding.SeverityHigh},
		// Base 0: no impact. Temporal and environmental are 0 as well.
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0, 0, 0, finding.SeverityInfo},
		// Environmental context lowers a high to a medium: the asset is only
		// reachable locally and confidentiality matters little there.
		// MISS 0.56 x 0.5 = 0.28, impact 1.7976, exploitability 2.515145325,
		// sum 4.312745325 -> 4.4.
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N/CR:L/MAV:L", 7.5, 7.5, 4.4, finding.SeverityMedium},
		// 3.0 scores RC:U exactly (see roundup30).
		{"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/RC:U", 10, 9.2, 9.2, finding.SeverityCritical},
	} {
		v, err := Parse(tc.vector)
		if err != nil {
			t.Fatal(err)
		}
		if v.Base() != tc.b || v.Temporal() != tc.t || v.Environmental() != tc.e || v.Severity() != tc.severity {
			t.Errorf("%s: got %v %v %v %v, want %v %v %v %v", tc.vector,
				v.Base(), v.Temporal(), v.Environmental(), v.Severity(), tc.b, tc.t, tc.e, tc.severity)
		}
		if sp := spec(t, tc.vector); sp != (scores{tc.b, tc.t, tc.e}) {
			t.Errorf("%s: spec transcription gives %v", tc.vector, sp)
		}
	}
}

type testdataCase struct {
	ok     bool
	vector string
}

func readTestdata(t testing.TB) []testdataCase {
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []testdataCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "ok "):
			cases = append(cases, testdataCase{true, line[3:]})
		case strings.HasPrefix(line, "bad "):
			cases = append(cases, testdataCase{false, line[4:]})
		default:
			t.Fatalf("testdata line without ok/bad: %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

func TestParseTestdata(t *testing.T) {
	for _, tc := range readTestdata(t) {
		v, err := Parse(tc.vector)
		if tc.ok != (err == nil) {
			t.Errorf("Parse(%q) error %v, want ok=%v", tc.vector, err, tc.ok)
			continue
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason == "" || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("Parse(%q): error %q is not a one-line *ParseError", tc.vector, err)
			}
			if v != (Vector{}) {
				t.Errorf("Parse(%q) returned a non-zero Vector with an error", tc.vector)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	const base = "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
	for _, tc := range []struct{ in, want string }{
		{"", "empty vector"},
		{base, `missing "CVSS:3.1/" or "CVSS:3.0/" prefix`},
		{"CVSS:3.1", `no "/"`},
		{"CVSS:3.1/", "empty metric"},
		{"CVSS:4.0/" + base, `unsupported CVSS version (want 3.1 or 3.0): "4.0"`},
		{"CVSS:3.1/av:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", `unknown metric: "av"`},
		{"CVSS:3.1/AV:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", `metric AV: invalid value (allowed: N, A, L, P): "n"`},
		{"CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", `metric AV: invalid value (allowed: N, A, L, P): "X"`},
		{"CVSS:3.1/AV:N/AC:L/UI:N/S:U/C:H/I:H/A:H", "metric PR: missing"},
		{"CVSS:3.1/" + base + "/E:X/E:X", "metric E: defined more than once"},
		{"CVSS:3.1/" + base + "/", "empty metric"},
		{"CVSS:3.1/" + base + " ", `metric A: invalid value (allowed: H, L, N): "H "`},
		{"CVSS:3.1/" + base + "/RL", `metric RL: no ":" and value: "RL"`},
		{"CVSS:3.1/" + base + "/RL:", "metric RL: empty value (allowed: X, U, W, T, O)"},
		{"CVSS:3.1/" + base + "/MS:N", `metric MS: invalid value (allowed: X, U, C): "N"`},
		{"CVSS:3.1/" + base + "/Foo:1", `unknown metric: "Foo"`},
		{"CVSS:3.1/" + base + "/:N", `metric name missing: ":N"`},
		{"CVSS:3.1/" + base + "/VERYLONGNAME", `unknown metric: "VERYLONGNAME"`},
		{"CVSS:3.1/" + base + "/E:" + strings.Repeat("H", 1<<20), `metric E: invalid value (allowed: X, H, F, P, U): "HHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHHH..."`},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.60q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestParseTolerant(t *testing.T) {
	const want = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
	for _, in := range []string{
		want,
		"  " + want + "\n",
		"AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"\tAV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H ",
	} {
		v, err := ParseTolerant(in)
		if err != nil || v.String() != want {
			t.Errorf("ParseTolerant(%q) = %v, %v", in, v, err)
		}
		if in != want {
			if _, err := Parse(in); err == nil {
				t.Errorf("strict Parse accepted %q", in)
			}
		}
	}
	for _, in := range []string{"", "  ", "AV:N/AC:L", "7.5", "high", "(AV:N/AC:L/Au:N/C:P/I:P/A:P)", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"} {
		if _, err := ParseTolerant(in); err == nil {
			t.Errorf("ParseTolerant(%q) accepted", in)
		}
	}
	if v, _ := ParseTolerant("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"); v.Version() != "3.0" {
		t.Errorf("3.0 prefix read as %q", v.Version())
	}
}

func TestVectorAccessors(t *testing.T) {
	v, err := Parse("CVSS:3.0/MA:N/AV:A/E:X/AC:L/PR:H/UI:N/S:C/C:N/I:N/A:N/CR:X")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.String(), "CVSS:3.0/AV:A/AC:L/PR:H/UI:N/S:C/C:N/I:N/A:N/MA:N"; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if v.Version() != "3.0" || v.HasTemporal() || !v.HasEnvironmental() {
		t.Errorf("Version %q HasTemporal %v HasEnvironmental %v", v.Version(), v.HasTemporal(), v.HasEnvironmental())
	}
	var zero Vector
	if zero.String() != "" || zero.Version() != "" || zero.Base() != 0 || zero.Temporal() != 0 ||
		zero.Environmental() != 0 || zero.Severity() != finding.SeverityInfo || zero.With(Environment{m: [numEnv]uint8{1}}) != zero {
		t.Errorf("zero Vector is not inert")
	}
}

func TestRating(t *testing.T) {
	for _, tc := range []struct {
		score float64
		want  finding.Severity
		name  string
	}{
		{0, finding.SeverityInfo, "None"},
		{0.1, finding.SeverityLow, "Low"},
		{3.9, finding.SeverityLow, "Low"},
		{3.95, finding.SeverityLow, "Low"},
		{4.0, finding.SeverityMedium, "Medium"},
		{6.9, finding.SeverityMedium, "Medium"},
		{7.0, finding.SeverityHigh, "High"},
		{8.9, finding.SeverityHigh, "High"},
		{9.0, finding.SeverityCritical, "Critical"},
		{10, finding.SeverityCritical, "Critical"},
		{-1, finding.SeverityInfo, "None"},
	} {
		got := Rating(tc.score)
		if got != tc.want || RatingName(got) != tc.name {
			t.Errorf("Rating(%v) = %v (%s), want %v (%s)", tc.score, got, RatingName(got), tc.want, tc.name)
		}
	}
}

// TestParseScoreAllocs holds the requirement: parsing and scoring a
// valid vector allocates nothing.
func TestParseScoreAllocs(t *testing.T) {
	var sink float64
	for _, vec := range benchVectors {
		allocs := testing.AllocsPerRun(200, func() {
			v, err := Parse(vec)
			if err != nil {
				t.Fatal(err)
			}
			sink += v.Base() + v.Temporal() + v.Environmental() + float64(v.Severity())
			env, _ := ParseEnvironment("CR:H/MAV:L")
			sink += v.With(env).Environmental()
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per parse and score, want 0", vec, allocs)
		}
	}
	_ = sink
}
