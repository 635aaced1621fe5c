package api

import (
	"cmp"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/store"
)

// The JSON shapes of the findings routes (openapi.yaml: Finding,
// FindingDetail, CVSS, Location, ControlRef, ControlLink, Observation).
// The findings CSV export is written from Finding too.

// Finding is a finding as GET /v1/findings lists it. Lists are never null,
// so that clients need no null checks.
type Finding struct {
	ID             int64          `json:"id"`
	Scope          string         `json:"scope"`
	Fingerprint    string         `json:"fingerprint"`
	Kind           string         `json:"kind"`
	Tool           string         `json:"tool"`
	Rule           string         `json:"rule"`
	RuleName       string         `json:"rule_name,omitempty"`
	Title          string         `json:"title"`
	Severity       string         `json:"severity"`
	SeveritySource string         `json:"severity_source,omitempty"`
	CVSS           *CVSS          `json:"cvss"` // null when the finding has no CVSS vector
	Status         finding.Status `json:"status"`
	Suppressed     bool           `json:"suppressed"`
	Location       Location       `json:"location"`
	CWE            []int          `json:"cwe"`
	CVE            []string       `json:"cve"`
	FirstSeen      time.Time      `json:"first_seen"`
	LastSeen       time.Time      `json:"last_seen"`
	SLADue         *time.Time     `json:"sla_due"`
	ResolvedAt     *time.Time     `json:"resolved_at"`
	ResolvedByRun  *string        `json:"resolved_by_run"`
	// Controls are the CCM controls the finding is linked to, each with
	// its version: CCM v4.1 reused v4.0.13 ids for other controls.
	Controls []ControlRef `json:"controls"`
	// Review is the people's view beside status (untriaged, confirmed,
	// false_positive, risk_accepted, not_applicable), kept under the
	// finding's identity; Owners are the users who own one of its controls.
	Review string   `json:"review"`
	Owners []string `json:"owners"`
}

// CVSS is a finding's CVSS vector and scores.
type CVSS struct {
	Version       string  `json:"version"`
	Vector        string  `json:"vector"`
	Base          float64 `json:"base"`
	Temporal      float64 `json:"temporal"`
	Environmental float64 `json:"environmental"`
}

// Location is where a finding was seen.
type Location struct {
	Kind        string `json:"kind,omitempty"`
	URI         string `json:"uri,omitempty"`
	StartLine   int    `json:"start_line,omitempty"`
	StartColumn int    `json:"start_column,omitempty"`
	EndLine     int    `json:"end_line,omitempty"`
	EndColumn   int    `json:"end_column,omitempty"`
	Logical     string `json:"logical,omitempty"`
}

// ControlRef names a CCM control: ids are only unique within a version.
type ControlRef struct {
	Version string `json:"version"`
	ID      string `json:"id"`
}

// FindingDetail is GET /v1/findings/{id}: the finding with its evidence
// trail. Its controls carry each link's rule and reason, in place of the
// list's bare references.
type FindingDetail struct {
	Finding
	ToolVersion              string         `json:"tool_version,omitempty"`
	Message                  string         `json:"message,omitempty"`
	Description              string         `json:"description,omitempty"`
	Tags                     []string       `json:"tags"`
	References               []string       `json:"references"`
	Evidence                 []string       `json:"evidence"`
	SuppressionJustification string         `json:"suppression_justification,omitempty"`
	LastRunID                *string        `json:"last_run_id"`
	UpdatedAt                time.Time      `json:"updated_at"`
	ObservationsTotal        int            `json:"observations_total"`
	Observations             []Observation  `json:"observations"`   // newest first, at most 1000
	Controls                 []ControlLink  `json:"controls"`       // shadows Finding.Controls
	Retests                  []Retest       `json:"retests"`        // newest first
	EvidenceFiles            []EvidenceFile `json:"evidence_files"` // files a person attached (manual findings)
}

// Retest is one retest of a finding: what it re-runs and the run that
// answered it. Result is pending, passed (the run did not see the finding
// and resolved it) or failed (the run saw it again).
type Retest struct {
	ID          int64      `json:"id"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	Schedule    string     `json:"schedule,omitempty"`
	Rule        string     `json:"rule"`
	Target      string     `json:"target,omitempty"`
	RunID       *string    `json:"run_id"`
	Result      string     `json:"result"`
	DecidedAt   *time.Time `json:"decided_at"`
}

// RetestOf converts a store retest.
func RetestOf(r store.Retest) Retest {
	return Retest{ID: r.ID, RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt, Schedule: r.Schedule, Rule: r.Rule,
		Target: r.Target, RunID: r.RunID, Result: r.Result, DecidedAt: r.DecidedAt}
}

// EvidenceFile is a file attached to a finding, stored as an artifact by
// its SHA-256.
type EvidenceFile struct {
	SHA256      string    `json:"sha256"`
	FileName    string    `json:"file_name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	AddedBy     string    `json:"added_by"`
	AddedAt     time.Time `json:"added_at"`
}

// Note is a note on a finding with every version of its text.
type Note struct {
	ID        int64         `json:"id"`
	FindingID int64         `json:"finding_id"`
	Text      string        `json:"text"`
	Version   int           `json:"version"`
	CreatedBy string        `json:"created_by"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedBy string        `json:"updated_by"`
	UpdatedAt time.Time     `json:"updated_at"`
	History   []NoteVersion `json:"history"`
}

// NoteVersion is one version of a note's text.
type NoteVersion struct {
	Version  int       `json:"version"`
	Text     string    `json:"text"`
	EditedBy string    `json:"edited_by"`
	EditedAt time.Time `json:"edited_at"`
}

// NoteOf converts a store note.
func NoteOf(n store.Note) Note {
	out := Note{ID: n.ID, FindingID: n.FindingID, Text: n.Text, Version: n.Version, CreatedBy: n.CreatedBy,
		CreatedAt: n.CreatedAt, UpdatedBy: n.UpdatedBy, UpdatedAt: n.UpdatedAt, History: make([]NoteVersion, len(n.History))}
	for i, v := range n.History {
		out.History[i] = NoteVersion{Version: v.Version, Text: v.Text, EditedBy: v.EditedBy, EditedAt: v.EditedAt}
	}
	return out
}

// Observation is one run that saw the finding, with the control links that
// sighting was given and the hash of the rules that gave them. Both are
// absent for sightings recorded before links were kept per sighting.
type Observation struct {
	RunID     string        `json:"run_id"`
	SeenAt    time.Time     `json:"seen_at"`
	RulesHash string        `json:"rules_hash,omitempty"`
	Controls  []ControlLink `json:"controls,omitempty"`
}

// ControlLink is a finding's link to a CCM control, with the mapping rule
// that made it and why.
type ControlLink struct {
	Version string `json:"version"`
	ID      string `json:"id"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason"`
}

// FindingOf is the wire form of a listed finding.
func FindingOf(f store.FindingRow) Finding {
	out := Finding{
		ID: f.ID, Scope: f.Scope, Fingerprint: f.Fingerprint, Kind: f.Kind, Tool: f.Tool, Rule: f.Rule,
		RuleName: f.RuleName, Title: f.Title, Severity: f.Severity, SeveritySource: f.SeveritySource,
		Status: f.Status, Suppressed: f.Suppressed, Location: locationOf(f.Location),
		CWE: nonNilSlice(f.CWE), CVE: nonNilSlice(f.CVE), FirstSeen: f.FirstSeen, LastSeen: f.LastSeen,
		SLADue: f.SLADue, ResolvedAt: f.ResolvedAt, ResolvedByRun: f.ResolvedByRun,
		Controls: make([]ControlRef, len(f.Controls)),
		Review:   cmp.Or(f.Review, "untriaged"), Owners: nonNilSlice(f.Owners),
	}
	if f.CVSS != nil {
		out.CVSS = &CVSS{Version: f.CVSS.Version, Vector: f.CVSS.Vector, Base: f.CVSS.Base,
			Temporal: f.CVSS.Temporal, Environmental: f.CVSS.Environmental}
	}
	for i, c := range f.Controls {
		out.Controls[i] = ControlRef{Version: c.Version, ID: c.ID}
	}
	return out
}

// FindingDetailOf is the wire form of a finding with its evidence trail.
func FindingDetailOf(d store.FindingDetail) FindingDetail {
	out := FindingDetail{
		Finding: FindingOf(d.FindingRow), ToolVersion: d.ToolVersion, Message: d.Message,
		Description: d.Description, Tags: nonNilSlice(d.Tags), References: nonNilSlice(d.References),
		Evidence: nonNilSlice(d.Evidence), SuppressionJustification: d.SuppressionJustification,
		LastRunID: d.LastRunID, UpdatedAt: d.UpdatedAt, ObservationsTotal: d.ObservationsTotal,
		Observations: make([]Observation, len(d.Observations)), Controls: controlLinksOf(d.Controls),
		Retests: make([]Retest, len(d.Retests)), EvidenceFiles: make([]EvidenceFile, len(d.EvidenceFiles)),
	}
	for i, r := range d.Retests {
		out.Retests[i] = RetestOf(r)
	}
	for i, e := range d.EvidenceFiles {
		out.EvidenceFiles[i] = EvidenceFile{SHA256: e.SHA256, FileName: e.FileName, ContentType: e.ContentType,
			Size: e.Size, AddedBy: e.AddedBy, AddedAt: e.AddedAt}
	}
	for i, o := range d.Observations {
		out.Observations[i] = Observation{RunID: o.RunID, SeenAt: o.SeenAt, RulesHash: o.RulesHash}
		// nil stays nil: "controls" is then left out, which says the
		// sighting predates per-sighting links.
		if o.Controls != nil {
			out.Observations[i].Controls = controlLinksOf(o.Controls)
		}
	}
	return out
}

func controlLinksOf(ls []store.ControlLink) []ControlLink {
	out := make([]ControlLink, len(ls))
	for i, l := range ls {
		out[i] = ControlLink{Version: l.Version, ID: l.ID, Rule: l.Rule, Reason: l.Reason}
	}
	return out
}

func locationOf(l finding.Location) Location {
	return Location{Kind: string(l.Kind), URI: l.URI, StartLine: l.StartLine, StartColumn: l.StartColumn,
		EndLine: l.EndLine, EndColumn: l.EndColumn, Logical: l.Logical}
}

// nonNilSlice returns s, or an empty slice for nil, so that a list
// encodes as [] rather than null.
func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
