// Package finding holds starpipe's core data types: findings, assets,
// severities, statuses and fingerprints. It is pure data with no I/O so that
// every other package can share it without pulling anything else in.
package finding

import (
	"time"
)

// ScanKind says how a finding was produced.
type ScanKind string

const (
	KindExternal      ScanKind = "external"
	KindAuthenticated ScanKind = "authenticated"
	KindCode          ScanKind = "code"
)

// ParseScanKind validates a scan kind given by a user.
func ParseScanKind(s string) (ScanKind, error) {
	switch k := ScanKind(s); k {
	case KindExternal, KindAuthenticated, KindCode:
		return k, nil
	}
	return "", &ValueError{Field: "kind", Value: s, Allowed: "external, authenticated, code"}
}

// ValueError reports a value outside an enumeration.
type ValueError struct {
	Field, Value, Allowed string
}

func (e *ValueError) Error() string {
	return "invalid " + e.Field + " " + quote(e.Value) + " (allowed: " + e.Allowed + ")"
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "\"" + s + "\""
}

// LocationKind says what a location points at.
type LocationKind string

const (
	LocationFile    LocationKind = "file"    // a path in a repository or file system
	LocationURL     LocationKind = "url"     // a web endpoint
	LocationHost    LocationKind = "host"    // host or host:port (network service)
	LocationLogical LocationKind = "logical" // a function, class, package or other logical place
	LocationNone    LocationKind = ""
)

// Location is where a finding was seen. For code findings URI is the artifact
// path resolved against the tool's base URIs; for network findings it is the
// matched URL or host:port.
type Location struct {
	Kind        LocationKind `json:"kind,omitempty"`
	URI         string       `json:"uri,omitempty"`
	StartLine   int          `json:"start_line,omitempty"`
	StartColumn int          `json:"start_column,omitempty"`
	EndLine     int          `json:"end_line,omitempty"`
	EndColumn   int          `json:"end_column,omitempty"`
	Logical     string       `json:"logical,omitempty"` // fully qualified logical location, if any
}

// Signals are the raw severity hints a tool gave, before scoring decides.
// Parsers fill them; the scoring package turns them into a Severity and
// records which signal it used.
type Signals struct {
	Vector string   `json:"vector,omitempty"` // a CVSS v3.x vector string as the tool wrote it
	Score  *float64 `json:"score,omitempty"`  // a numeric score (nuclei cvss-score, SARIF security-severity)
	Label  string   `json:"label,omitempty"`  // the tool's own severity word (nuclei info.severity)
	Level  string   `json:"level,omitempty"`  // SARIF level: error, warning, note, none
	EPSS   *float64 `json:"epss,omitempty"`   // EPSS probability, when the tool reports it
}

// Finding is one normalised result of a scan. Parsers produce it; scoring and
// mapping enrich it; the store persists it keyed by (Scope, Kind, Fingerprint).
type Finding struct {
	Fingerprint       string   `json:"fingerprint"`
	FingerprintSource string   `json:"fingerprint_source"` // "tool:<name>" when the tool supplied it, else "computed"
	Scope             string   `json:"scope"`
	Kind              ScanKind `json:"kind"`
	Tool              string   `json:"tool"`
	ToolVersion       string   `json:"tool_version,omitempty"`
	RuleID            string   `json:"rule"`
	RuleName          string   `json:"rule_name,omitempty"`
	Title             string   `json:"title"`
	Message           string   `json:"message,omitempty"`
	Description       string   `json:"description,omitempty"`
	Location          Location `json:"location"`
	CWE               []int    `json:"cwe,omitempty"` // sorted, unique
	CVE               []string `json:"cve,omitempty"` // upper case, sorted, unique
	Tags              []string `json:"tags,omitempty"`
	References        []string `json:"references,omitempty"`
	Signals           Signals  `json:"signals"`

	// Set by scoring.
	CVSS           *CVSS          `json:"cvss,omitempty"`
	Severity       Severity       `json:"severity"`
	SeveritySource SeveritySource `json:"severity_source"`

	Suppressed    bool   `json:"suppressed,omitempty"`
	Justification string `json:"suppression_justification,omitempty"`

	// Evidence the tool attached (matcher name, extracted values, snippet).
	// Kept short; raw output lives in the stored artifact.
	Evidence []string `json:"evidence,omitempty"`

	// Set by mapping: the CCM controls this finding evidences, and the
	// hash of the mapping rules that linked them (mapping.Mapper.RulesHash),
	// which evidence records with each sighting's links.
	Controls     []ControlLink `json:"controls,omitempty"`
	MappingRules string        `json:"mapping_rules,omitempty"`

	SeenAt time.Time `json:"seen_at,omitzero"`
}

// CVSS carries a parsed vector and its scores. Environmental is the score
// under the scope's security requirements when context exists, otherwise
// equal to what FIRST's calculator shows for the vector alone.
type CVSS struct {
	Version       string  `json:"version"` // "3.0" or "3.1"
	Vector        string  `json:"vector"`  // canonical form
	Base          float64 `json:"base"`
	Temporal      float64 `json:"temporal"`
	Environmental float64 `json:"environmental"`
	Contextual    bool    `json:"contextual,omitempty"` // environmental metrics came from scope context
}

// AssetType says what an Asset is.
type AssetType string

const (
	AssetFQDN     AssetType = "fqdn"
	AssetIP       AssetType = "ip"
	AssetNetblock AssetType = "netblock"
	AssetASN      AssetType = "asn"
)

// Asset is a piece of attack surface discovered by enumeration (amass). Assets
// are not findings: they are what external scans then target.
type Asset struct {
	Type        AssetType `json:"type"`
	Value       string    `json:"value"`                 // name, address, CIDR, or AS number as text
	Domain      string    `json:"domain,omitempty"`      // root domain an FQDN belongs to
	Addresses   []string  `json:"addresses,omitempty"`   // for FQDN: resolved addresses
	Netblock    string    `json:"netblock,omitempty"`    // for IP: containing netblock
	ASN         int       `json:"asn,omitempty"`         // for IP or netblock: announcing AS
	Description string    `json:"description,omitempty"` // for ASN: registered owner
	Sources     []string  `json:"sources,omitempty"`
}

// ControlLink says that a finding is evidence for a CCM control, under which
// catalogue version, by which mapping rule, and why.
type ControlLink struct {
	Version string `json:"version"` // CCM version, e.g. "4.0.13" or "4.1"
	Control string `json:"id"`      // control id, e.g. "TVM-07"
	Rule    string `json:"rule"`    // mapping rule id
	Reason  string `json:"reason"`  // rendered reason template
}
