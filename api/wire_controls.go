package api

// The JSON shapes of GET /v1/controls (openapi.yaml: ControlCount). The
// handler builds them from the store's counts and the catalogue's titles
// (Server.controlItems).

// ControlCount is one control with its finding counts.
type ControlCount struct {
	Version    string         `json:"version"`
	ID         string         `json:"id"`
	Domain     string         `json:"domain,omitempty"`
	DomainName string         `json:"domain_name,omitempty"`
	Title      string         `json:"title,omitempty"`
	Open       map[string]int `json:"open"`   // active findings by severity
	Total      int            `json:"total"`  // active findings
	Linked     int            `json:"linked"` // findings linked in any status
}

// ControlList is the answer of GET /v1/controls: the CCM version counted,
// and its controls in catalogue order. (Fields in alphabetical order: the
// answer was a map, and its bytes stay the same.)
type ControlList struct {
	Items   []ControlCount `json:"items"`
	Version string         `json:"version"`
}
