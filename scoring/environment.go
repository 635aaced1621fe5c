package scoring

import "strings"

// Environment is a scope's context for environmental scoring: the security
// requirements (CR, IR, AR) and modified base metrics (MAV ... MA) that an
// asset or repository carries in configuration. The zero Environment means
// no context.
type Environment struct {
	m [numEnv]uint8 // indexed by metric id - firstEnv; 0 is X
}

// ParseEnvironment reads a fragment such as "CR:H/IR:H/AR:M/MAV:A": only
// environmental metrics, no "CVSS:" prefix, each at most once, names and
// values exactly as the specification writes them (X is accepted and means
// Not Defined). Surrounding white space is ignored, since the fragment
// usually comes from a configuration file; the empty string is the zero
// Environment.
func ParseEnvironment(s string) (Environment, error) {
	var env Environment
	s = strings.TrimSpace(s)
	if s == "" {
		return env, nil
	}
	var v Vector
	if _, err := v.parseMetrics(s, firstEnv, numMetrics); err != nil {
		return env, err
	}
	copy(env.m[:], v.m[firstEnv:])
	return env, nil
}

// IsZero reports whether the environment defines nothing.
func (e Environment) IsZero() bool { return e == Environment{} }

// String returns the fragment in canonical order, without X metrics.
func (e Environment) String() string {
	var b []byte
	for i, x := range e.m {
		if x == 0 {
			continue
		}
		if b != nil {
			b = append(b, '/')
		}
		m := firstEnv + i
		b = append(b, metrics[m].name...)
		b = append(b, ':', metrics[m].values[x])
	}
	return string(b)
}

// With returns v with env's defined metrics overlaid: where the environment
// defines a metric it replaces the vector's own value, because the scope
// owner knows the asset better than the tool that wrote the vector; metrics
// the environment leaves undefined keep the vector's values.
func (v Vector) With(env Environment) Vector {
	if v.ver == 0 {
		return v
	}
	for i, x := range env.m {
		if x != 0 {
			v.m[firstEnv+i] = x
		}
	}
	return v
}
