// Package spec is the scan schedule definition users write: the
// `schedules:` list of a YAML file and the schedule objects of the HTTP
// API, which share field names (snake_case).
//
// Decoding is strict (unknown keys are errors, reported with their line)
// and every schedule is validated as a whole before any is used, so that a
// typo in a file cannot silently drop a scan that a Level 3 commitment
// counts on.
package spec

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler/cadence"
)

// Schedule is one scheduled scan.
type Schedule struct {
	// Name is the schedule's unique id: lower-case letters, digits and '-'.
	Name string           `json:"name" yaml:"name"`
	Kind finding.ScanKind `json:"kind" yaml:"kind"`

	Targets Targets        `json:"targets" yaml:"targets"`
	Nuclei  NucleiSettings `json:"nuclei,omitzero" yaml:"nuclei,omitempty"`
	Amass   AmassSettings  `json:"amass,omitzero" yaml:"amass,omitempty"`
	Code    CodeSettings   `json:"code,omitzero" yaml:"code,omitempty"`

	// Credential names a vault credential; required for authenticated
	// scans and refused for the others.
	Credential string `json:"credential,omitempty" yaml:"credential,omitempty"`

	// Cadence is a scheduler/cadence spec, evaluated in Timezone.
	Cadence string `json:"cadence" yaml:"cadence"`
	// Timezone is an IANA zone name; empty means UTC.
	Timezone string `json:"timezone,omitempty" yaml:"timezone,omitempty"`
	// Start (YYYY-MM-DD) anchors a biweekly cadence: its week fires.
	Start string `json:"start,omitempty" yaml:"start,omitempty"`

	// Controls lists the CCM v4 control ids this schedule's runs evidence.
	Controls []string `json:"controls,omitempty" yaml:"controls,omitempty"`
	Owner    string   `json:"owner,omitempty" yaml:"owner,omitempty"`
	// Enabled defaults to true; a disabled schedule is kept but not fired.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// Environment is a CVSS 3.1 environmental fragment such as "CR:H/IR:H"
	// applied when scoring this schedule's findings.
	Environment string `json:"environment,omitempty" yaml:"environment,omitempty"`
	// Timeout bounds the whole scan of one due time (all its steps). The
	// worker caps it with scan.max_duration; zero means that limit.
	Timeout Duration `json:"timeout,omitzero" yaml:"timeout,omitempty"`
}

// Targets are what a schedule scans; which lists apply depends on Kind.
type Targets struct {
	Domains      []string `json:"domains,omitempty" yaml:"domains,omitempty"`           // root domains for amass discovery
	URLs         []string `json:"urls,omitempty" yaml:"urls,omitempty"`                 // http(s) URLs or host:port
	Repositories []string `json:"repositories,omitempty" yaml:"repositories,omitempty"` // git URLs or local paths
}

// NucleiSettings tune nuclei for external and authenticated scans.
type NucleiSettings struct {
	TemplateDirs []string `json:"template_dirs,omitempty" yaml:"template_dirs,omitempty"`
	Tags         []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	ExcludeTags  []string `json:"exclude_tags,omitempty" yaml:"exclude_tags,omitempty"`
	Severities   []string `json:"severities,omitempty" yaml:"severities,omitempty"`
}

// AmassSettings tune subdomain discovery for external scans of domains.
type AmassSettings struct {
	Wordlist []string `json:"wordlist,omitempty" yaml:"wordlist,omitempty"`
	// WordlistName names a file in the admin's amass.wordlist_dir (a
	// bare file name).
	WordlistName string `json:"wordlist_name,omitempty" yaml:"wordlist_name,omitempty"`
	// WordlistFile is refused: a schedule must not read host files. It is
	// decoded only so that the refusal names the field.
	WordlistFile string   `json:"wordlist_file,omitempty" yaml:"wordlist_file,omitempty"`
	Resolvers    []string `json:"resolvers,omitempty" yaml:"resolvers,omitempty"`
	Passive      bool     `json:"passive,omitempty" yaml:"passive,omitempty"`
	Recursive    bool     `json:"recursive,omitempty" yaml:"recursive,omitempty"`
	Alterations  bool     `json:"alterations,omitempty" yaml:"alterations,omitempty"`
}

// CodeSettings say how a code scan runs its analyser.
type CodeSettings struct {
	// Analyzer names one of the analysers an admin defined in the daemon
	// configuration (analyzers:); that entry holds the command.
	Analyzer string `json:"analyzer,omitempty" yaml:"analyzer,omitempty"`
	// Command is refused: schedules name an analyser, they do not carry
	// programs. It is decoded only so that the refusal names the field
	// (and stored schedules from before analyzers still load, to fail
	// with that reason when they fire).
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	// Timeout and MaxOutputBytes may lower the analyser's configured
	// bounds, never raise them.
	Timeout        Duration `json:"timeout,omitzero" yaml:"timeout,omitempty"`
	MaxOutputBytes int64    `json:"max_output_bytes,omitempty" yaml:"max_output_bytes,omitempty"`
}

func (n NucleiSettings) isZero() bool {
	return len(n.TemplateDirs)+len(n.Tags)+len(n.ExcludeTags)+len(n.Severities) == 0
}

func (a AmassSettings) isZero() bool {
	return len(a.Wordlist)+len(a.Resolvers) == 0 && a.WordlistFile == "" && a.WordlistName == "" && !a.Passive && !a.Recursive && !a.Alterations
}

func (c CodeSettings) isZero() bool {
	return c.Analyzer == "" && len(c.Command) == 0 && c.Timeout == 0 && c.MaxOutputBytes == 0
}

// Duration is a time.Duration written as a Go duration string ("10m",
// "1h30m") in YAML and JSON. A bare number is refused rather than read as
// nanoseconds.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a number with a unit, e.g. 10m)", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler. It reports errors as
// *yaml.TypeError so that the decoder keeps their line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		if err := d.UnmarshalText([]byte(n.Value)); err == nil {
			return nil
		}
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q (use a number with a unit, e.g. 10m)", n.Line, n.Value)}}
}

// IsEnabled reports whether the schedule fires (Enabled defaults to true).
func (s Schedule) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// SetDefaults fills the fields whose absence means a default: Timezone
// "UTC" and Enabled true. Decode and DecodeJSON call it.
func (s *Schedule) SetDefaults() {
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
}

// Location loads the schedule's time zone (UTC when empty). "Local" is
// refused: it would make the schedule depend on the host it runs on.
func (s Schedule) Location() (*time.Location, error) {
	if s.Timezone == "" || s.Timezone == "UTC" {
		return time.UTC, nil
	}
	if strings.EqualFold(s.Timezone, "Local") {
		return nil, fmt.Errorf("%q depends on the host; name a zone like Europe/Berlin", s.Timezone)
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name like Europe/Berlin)", s.Timezone)
	}
	return loc, nil
}

// StartDate parses Start as midnight in the schedule's time zone; it is the
// zero time when Start is empty.
func (s Schedule) StartDate() (time.Time, error) {
	if s.Start == "" {
		return time.Time{}, nil
	}
	loc, err := s.Location()
	if err != nil {
		return time.Time{}, err
	}
	d, err := time.ParseInLocation(time.DateOnly, s.Start, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid date %q (use YYYY-MM-DD)", s.Start)
	}
	return d, nil
}

// CadenceOf parses the schedule's cadence in its time zone, anchored at
// its start date.
func (s Schedule) CadenceOf() (cadence.Cadence, error) {
	loc, err := s.Location()
	if err != nil {
		return nil, err
	}
	anchor, err := s.StartDate()
	if err != nil {
		return nil, err
	}
	return cadence.Parse(s.Cadence, loc, anchor)
}
