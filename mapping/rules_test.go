package mapping_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/mapping"
)

// TestLoadErrors checks that every kind of mistake in a rules file is
// refused at load with the file, the line and a reason.
func TestLoadErrors(t *testing.T) {
	cats := loadCatalogs(t)
	for _, tc := range []struct {
		file string
		line int
		want string
	}{
		{"bad-unknown-control.yaml", 6, `unknown control "TVM-99" in CCM 4.0.13`},
		{"bad-v41-id.yaml", 6, `in CCM 4.1 that title is I&S-04`},
		{"bad-unknown-field.yaml", 3, `unknown field "rulez"`},
		{"bad-unknown-rule-field.yaml", 6, `unknown rule field "severity"`},
		{"bad-unknown-match-field.yaml", 5, `unknown match field "severty"`},
		{"bad-glob.yaml", 4, `bad glob "zap[12": unclosed '['`},
		{"bad-regexp.yaml", 4, `bad regular expression`},
		{"bad-cwe-range.yaml", 4, `bad CWE range "299-200"`},
		{"bad-cwe-class.yaml", 6, `"no-such-class" is neither a CWE id`},
		{"bad-class-range.yaml", 3, `bad CWE range "30-20"`},
		{"bad-version.yaml", 5, `unknown CCM version "5.0"`},
		{"bad-reason.yaml", 5, `unknown reason field {{.Scanner}}`},
		{"bad-no-reason.yaml", 2, `no reason`},
		{"bad-empty-match.yaml", 4, `empty match; write ` + "`match: {any: true}`"},
		{"bad-duplicate-id.yaml", 6, `duplicate rule id`},
		{"bad-severity.yaml", 3, `unknown severity "urgent"`},
		{"bad-kind.yaml", 3, `invalid kind "internal"`},
		// yaml.v3 reports the line where the unclosed flow mapping's context
		// starts, counted from zero; the message still names the problem.
		{"bad-syntax.yaml", 2, `invalid YAML: did not find expected ',' or '}'`},
		{"bad-disable-unknown.yaml", 3, `no rule with that id`},
		{"bad-not-bool.yaml", 3, `has_cve: want true or false`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := mapping.LoadFile(path, cats, false)
			if err == nil {
				t.Fatal("loaded without error")
			}
			var le *mapping.Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *mapping.Error", err)
			}
			prefix := path + ":" + strconv.Itoa(tc.line) + ": "
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, prefix) && strings.Contains(line, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("error\n%v\nhas no line starting %q containing %q", err, prefix, tc.want)
			}
		})
	}
}

// TestLoadErrorsCollected checks that one load reports every problem, so a
// file can be fixed in one pass.
func TestLoadErrorsCollected(t *testing.T) {
	data := []byte(`rules:
  - id: a
    match: {tool: "x[", kind: nope}
    controls: {"4.0.13": [TVM-99]}
    reason: "{{.Bad}}"
`)
	_, err := mapping.LoadBytes("inline.yaml", data, nil, false)
	if err == nil {
		t.Fatal("no error")
	}
	if n := strings.Count(err.Error(), "inline.yaml:"); n != 4 {
		t.Errorf("%d problems reported, want 4:\n%v", n, err)
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := mapping.LoadFile(filepath.Join(t.TempDir(), "nope.yaml"), nil, false)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
}

func TestVersionSelection(t *testing.T) {
	m, err := mapping.Default()
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != "4.0.13" {
		t.Errorf("default mapper version %s", m.Version())
	}
	m, err = mapping.Default(mapping.WithVersion("v4.1"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != "4.1" {
		t.Errorf("WithVersion(v4.1): version %s", m.Version())
	}
	if _, err := mapping.Default(mapping.WithVersion("3.0.1")); err == nil {
		t.Error("WithVersion(3.0.1) loaded")
	}
	// A file whose rules name no control of the selected version is refused:
	// it would map nothing.
	_, err = mapping.LoadFile(filepath.Join("testdata", "custom-replace.yaml"), nil, false, mapping.WithVersion("4.0.13"))
	if err == nil || !strings.Contains(err.Error(), "no rule names a control for CCM 4.0.13") {
		t.Errorf("err = %v", err)
	}
}

func TestExtendDuplicateID(t *testing.T) {
	data := []byte(`extends: default
rules:
  - id: extra
    match: {kind: code}
    controls: {"4.0.13": [AIS-05]}
    reason: "x"
  - id: extra
    match: {kind: code}
    controls: {"4.0.13": [AIS-04]}
    reason: "y"
`)
	_, err := mapping.LoadBytes("dup.yaml", data, nil, false)
	if err == nil || !strings.Contains(err.Error(), `dup.yaml:7: rule "extra": duplicate rule id`) {
		t.Errorf("err = %v", err)
	}
}
