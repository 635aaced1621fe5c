package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds a schedules file; real ones are a few kilobytes.
const maxFileSize = 4 << 20

// file is the layout of a schedules file.
type file struct {
	Schedules []Schedule `yaml:"schedules"`
}

// LoadFile reads and validates a schedules file.
func LoadFile(path string, opts Options) ([]Schedule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening schedules file: %w", err)
	}
	defer f.Close()
	return Decode(f, path, opts)
}

// Decode reads a schedules file (`schedules: [...]`) strictly, applies
// defaults and validates every schedule. name labels errors (a path, or
// empty); opts carry the admin's bounds (see Validate). Problems come back joined with errors.Join, each a *FieldError
// with its line where one is known; YAML syntax errors are returned as the
// YAML parser reports them.
func Decode(r io.Reader, name string, opts Options) ([]Schedule, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", label(name), err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", label(name), maxFileSize)
	}

	// The node tree gives lines for every key; the typed decode below
	// knows the schema. yaml.v3 offers strictness (KnownFields) only on the
	// typed path, hence two passes over the same bytes.
	var root yaml.Node
	nd := yaml.NewDecoder(bytes.NewReader(data))
	if err := nd.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // an empty file has no schedules
		}
		return nil, fmt.Errorf("%s: %w", label(name), err)
	}
	var extra yaml.Node
	if err := nd.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document", label(name))
	}
	items := scheduleItems(&root)

	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("%s: %w", label(name), err)
		}
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, typeError(msg, name, &root, items))
		}
		return nil, errors.Join(errs...)
	}

	for i := range f.Schedules {
		f.Schedules[i].SetDefaults()
	}
	fes := validateAll(f.Schedules, opts)
	if len(fes) == 0 {
		return f.Schedules, nil
	}
	errs := make([]error, 0, len(fes))
	for _, fe := range fes {
		fe.File = name
		if fe.Index >= 0 && fe.Index < len(items) {
			fe.Line = lineOf(items[fe.Index], fe.Field)
		}
		errs = append(errs, fe)
	}
	return nil, errors.Join(errs...)
}

// DecodeJSON reads one schedule as the API receives it: unknown fields are
// errors, defaults are applied, and the schedule is validated.
func DecodeJSON(r io.Reader, opts Options) (Schedule, error) {
	var s Schedule
	dec := json.NewDecoder(io.LimitReader(r, maxFileSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Schedule{}, fmt.Errorf("decoding schedule: %w", err)
	}
	if dec.More() {
		return Schedule{}, errors.New("decoding schedule: unexpected data after the schedule object")
	}
	s.SetDefaults()
	if err := s.Validate(opts); err != nil {
		return Schedule{}, err
	}
	return s, nil
}

func label(name string) string {
	if name == "" {
		return "schedules"
	}
	return name
}

// scheduleItems returns the mapping nodes of the schedules list, if the
// document has that shape.
func scheduleItems(root *yaml.Node) []*yaml.Node {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "schedules" && doc.Content[i+1].Kind == yaml.SequenceNode {
			return doc.Content[i+1].Content
		}
	}
	return nil
}

// lineOf finds the line of a field path ("targets.urls[1]") inside a
// schedule's node, falling back to the deepest part of the path present,
// then to the schedule itself.
func lineOf(n *yaml.Node, path string) int {
	line := n.Line
	for _, seg := range splitPath(path) {
		switch {
		case seg.key != "" && n.Kind == yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg.key {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case seg.key == "" && n.Kind == yaml.SequenceNode && seg.index < len(n.Content):
			n = n.Content[seg.index]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

type pathSeg struct {
	key   string
	index int
}

func splitPath(path string) []pathSeg {
	var out []pathSeg
	for _, part := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, pathSeg{key: key})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				break
			}
			out = append(out, pathSeg{index: i})
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return out
}

var (
	lineMsgRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownKeyRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// typeError turns one of yaml.v3's decode messages ("line 7: field foo not
// found in type spec.Schedule") into a FieldError with the schedule and
// field path it belongs to.
func typeError(msg, name string, root *yaml.Node, items []*yaml.Node) error {
	m := lineMsgRE.FindStringSubmatch(msg)
	if m == nil {
		return &FieldError{File: name, Index: -1, Reason: msg}
	}
	line, _ := strconv.Atoi(m[1])
	reason, key := m[2], ""
	if k := unknownKeyRE.FindStringSubmatch(reason); k != nil {
		key = k[1]
		reason = fmt.Sprintf("unknown field %q", key)
	}
	fe := &FieldError{File: name, Line: line, Index: -1, Reason: reason}
	for i, it := range items {
		if p, ok := findAt(it, "", line, key); ok {
			fe.Index, fe.Field = i, p
			fe.Schedule = mappingValue(it, "name")
			return fe
		}
	}
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if p, ok := findAt(doc, "", line, key); ok {
		fe.Field = p
	}
	return fe
}

// findAt returns the path of the node at line: the key named key when key
// is set (an unknown field), else the deepest value on that line.
func findAt(n *yaml.Node, path string, line int, key string) (string, bool) {
	var (
		best  string
		found bool
	)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if k.Line == line && (key == "" || k.Value == key) {
				best, found = p, true
			}
			if sub, ok := findAt(v, p, line, key); ok {
				best, found = sub, true
			}
		}
	case yaml.SequenceNode:
		for j, it := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, j)
			if key == "" && it.Line == line {
				best, found = p, true
			}
			if sub, ok := findAt(it, p, line, key); ok {
				best, found = sub, true
			}
		}
	}
	return best, found
}

func mappingValue(n *yaml.Node, key string) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}
