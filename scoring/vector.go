package scoring

import (
	"strconv"
	"strings"
)

// Version numbers stored in a Vector. Zero marks the zero Vector, which is
// not a parsed vector and scores 0.
const (
	v30 = 30
	v31 = 31
)

// maxVectorLen is the length of the longest valid vector: the prefix and all
// 22 metrics with their longest names. Any longer string has a bad component.
const maxVectorLen = 117

// Vector is a parsed CVSS v3.0 or v3.1 vector. It is a small value: parsing
// and scoring it allocate nothing. The zero Vector is not a valid vector; its
// scores are 0 and its String is empty.
type Vector struct {
	ver uint8
	m   [numMetrics]uint8 // value index per metric; 0 is X for optional metrics
}

// ParseError says why a vector or environment fragment was rejected: which
// metric (when one is concerned), which value, and the rule it breaks.
type ParseError struct {
	Metric string // metric name as the specification writes it, if known
	Value  string // the offending text, quoted in Error; shortened if very long
	Reason string
}

func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Metric != "" {
		b.WriteString("metric ")
		b.WriteString(e.Metric)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	if e.Value != "" {
		b.WriteString(": ")
		b.WriteString(strconv.Quote(e.Value))
	}
	return b.String()
}

// shorten keeps error messages one short line even for megabyte inputs, and
// copies so that the error does not pin the caller's whole input in memory.
func shorten(s string) string {
	const max = 40
	if len(s) > max {
		return strings.Clone(s[:max]) + "..."
	}
	return strings.Clone(s)
}

func errorf(metric int, value, reason string) *ParseError {
	e := &ParseError{Value: shorten(value), Reason: reason}
	if metric >= 0 {
		e.Metric = metrics[metric].name
	}
	return e
}

// Parse reads a CVSS v3.1 or v3.0 vector strictly as the specification
// writes it: the "CVSS:3.1/" or "CVSS:3.0/" prefix, all eight base metrics,
// optional temporal and environmental metrics, in any order, each at most
// once, names and values in upper case exactly as specified, no spaces. A
// v3.0 vector is scored with the v3.0 formulas.
func Parse(s string) (Vector, error) {
	var v Vector
	if s == "" {
		return v, &ParseError{Reason: "empty vector"}
	}
	ver, rest, err := cutPrefix(s)
	if err != nil {
		return v, err
	}
	seen, err := v.parseMetrics(rest, 0, numMetrics)
	if err != nil {
		return Vector{}, err
	}
	if seen&baseMask != baseMask {
		for m := mAV; m < firstTemporal; m++ {
			if seen&(1<<m) == 0 {
				return Vector{}, &ParseError{Metric: metrics[m].name, Reason: "missing (all eight base metrics are mandatory)"}
			}
		}
	}
	v.ver = ver
	return v, nil
}

// cutPrefix checks the "CVSS:3.x/" prefix and returns the version and what
// follows it.
func cutPrefix(s string) (uint8, string, error) {
	const p = "CVSS:"
	if !strings.HasPrefix(s, p) {
		return 0, "", &ParseError{Reason: `missing "CVSS:3.1/" or "CVSS:3.0/" prefix`, Value: shorten(s)}
	}
	rest := s[len(p):]
	ver, after, found := strings.Cut(rest, "/")
	if !found {
		return 0, "", &ParseError{Reason: `no "/" and metrics after the version`, Value: shorten(s)}
	}
	switch ver {
	case "3.1":
		return v31, after, nil
	case "3.0":
		return v30, after, nil
	}
	return 0, "", &ParseError{Reason: "unsupported CVSS version (want 3.1 or 3.0)", Value: shorten(ver)}
}

// parseMetrics reads "/"-separated NAME:VALUE components into v, accepting
// only metrics with ids in [lo, hi), and returns the set of metrics seen.
func (v *Vector) parseMetrics(s string, lo, hi int) (uint32, error) {
	var seen uint32
	for {
		comp, rest, more := s, "", false
		if i := strings.IndexByte(s, '/'); i >= 0 {
			comp, rest, more = s[:i], s[i+1:], true
		}
		if comp == "" {
			return 0, &ParseError{Reason: `empty metric (a "/" too many)`}
		}
		name, val, found := comp, "", false
		// Metric names have one to three letters, so the colon is near.
		for i := 1; i < len(comp) && i <= 4; i++ {
			if comp[i] == ':' {
				name, val, found = comp[:i], comp[i+1:], true
				break
			}
		}
		m := lookupMetric(name)
		switch {
		case !found && m >= 0:
			return 0, errorf(m, comp, `no ":" and value`)
		case m < 0:
			if !found {
				name, _, _ = strings.Cut(comp, ":")
			}
			if name == "" {
				return 0, errorf(-1, comp, "metric name missing")
			}
			return 0, errorf(-1, name, "unknown metric")
		case m < lo || m >= hi:
			return 0, errorf(m, "", wrongPlace(lo))
		}
		if len(val) != 1 || valueIndex[m][val[0]] == noValue {
			if val == "" {
				return 0, errorf(m, "", "empty value (allowed: "+metrics[m].allowed+")")
			}
			return 0, errorf(m, val, "invalid value (allowed: "+metrics[m].allowed+")")
		}
		if seen&(1<<m) != 0 {
			return 0, errorf(m, "", "defined more than once")
		}
		seen |= 1 << m
		v.m[m] = valueIndex[m][val[0]]
		if !more {
			return seen, nil
		}
		s = rest
	}
}

func wrongPlace(lo int) string {
	if lo == firstEnv {
		return "not an environmental metric (allowed: CR, IR, AR, MAV, MAC, MPR, MUI, MS, MC, MI, MA)"
	}
	return "not allowed here"
}

// ParseTolerant reads a vector as tools write it in their output: it trims
// surrounding white space and, when the "CVSS:" prefix is missing but the
// text starts with a metric ("AV:N/AC:L/..."), reads it as CVSS v3.1, the
// version every current tool means by a bare v3 vector. Everything else is
// as strict as Parse. Use Parse for input that a person typed as a vector.
func ParseTolerant(s string) (Vector, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "CVSS:") && s != "" {
		var v Vector
		seen, err := v.parseMetrics(s, 0, numMetrics)
		if err != nil {
			return Vector{}, err
		}
		if seen&baseMask != baseMask {
			// Reuse Parse's message for the missing metric.
			_, err := Parse("CVSS:3.1/" + s)
			return Vector{}, err
		}
		v.ver = v31
		return v, nil
	}
	return Parse(s)
}

// Version returns "3.1" or "3.0", or "" for the zero Vector.
func (v Vector) Version() string {
	switch v.ver {
	case v31:
		return "3.1"
	case v30:
		return "3.0"
	}
	return ""
}

// HasTemporal reports whether the vector defines a temporal metric other
// than X (Not Defined).
func (v Vector) HasTemporal() bool {
	return v.m[mE]|v.m[mRL]|v.m[mRC] != 0
}

// HasEnvironmental reports whether the vector defines an environmental
// metric other than X (Not Defined).
func (v Vector) HasEnvironmental() bool {
	for _, x := range v.m[firstEnv:] {
		if x != 0 {
			return true
		}
	}
	return false
}

// String returns the vector in canonical form: the prefix, then the metrics
// in the specification's order, omitting optional metrics that are X, as
// FIRST's calculator writes vectors. Parsing it gives back the same Vector.
func (v Vector) String() string {
	if v.ver == 0 {
		return ""
	}
	var buf [maxVectorLen]byte
	return string(v.appendTo(buf[:0]))
}

func (v Vector) appendTo(b []byte) []byte {
	if v.ver == v31 {
		b = append(b, "CVSS:3.1"...)
	} else {
		b = append(b, "CVSS:3.0"...)
	}
	for m := range numMetrics {
		if m >= firstTemporal && v.m[m] == 0 {
			continue
		}
		b = append(b, '/')
		b = append(b, metrics[m].name...)
		b = append(b, ':', metrics[m].values[v.m[m]])
	}
	return b
}
