package sarif

// The types here hold only what normalisation needs from a SARIF run. They
// are filled by the hand-written decoders in decode.go, which skip every
// other property without building it.

// component is a SARIF toolComponent: the driver, an extension, or a
// taxonomy.
type component struct {
	name, version, guid string
	rules               []rule
	byID                map[string]int // rule or taxon id -> index (first wins)
	globalMessages      map[string]string
	taxa                []rule // taxonomies reuse rule: id, name, descriptions
}

// rule is a reportingDescriptor (a rule, or a taxon of a taxonomy).
type rule struct {
	id, name         string
	short, full      string
	helpURI          string
	messages         map[string]string
	defaultLevel     string
	props            props
	relationships    []taxonRef
	hasDefaultConfig bool
}

// taxonRef is a reportingDescriptorReference to a taxon (result.taxa,
// rule.relationships[].target).
type taxonRef struct {
	id        string
	index     int // -1 when absent
	compName  string
	compIndex int // -1 when absent
}

// props is what starpipe reads from a property bag.
type props struct {
	tags     []string
	cwe      []int
	cve      []string
	taxa     []string // non-CWE taxa as "component/id" tags
	score    *float64
	vector   string
	vecRank  int // how well the vector's key matched; lower wins
	vecKey   string
	label    string
	labelKey string
}

// uriBase is one originalUriBaseIds entry or an artifact's location.
type uriBase struct {
	uri, baseID string
}

// logical is a run.logicalLocations entry.
type logical struct {
	fqn, name string
}

// runCtx is everything in a run (other than its results) that resolving a
// result needs.
type runCtx struct {
	driver     component
	extensions []component
	toolSeen   bool
	bases      map[string]uriBase
	artifacts  []uriBase
	logicals   []logical
	taxonomies []component
	repoURI    string
}

// rawResult is one decoded SARIF result, before rule resolution.
type rawResult struct {
	ruleID       string
	ruleIndex    int // result.ruleIndex, -1 when absent
	refID        string
	refIndex     int // result.rule.index, -1 when absent
	refCompName  string
	refCompIndex int
	refCompGUID  string

	kind, level    string
	baselineAbsent bool

	msgText, msgMarkdown, msgID string
	msgArgs                     []string

	loc       rawLocation
	hasLoc    bool
	target    rawLocation // analysisTarget, used when there is no location
	hasTarget bool

	fpKey, fpVal string      // lexicographically first fingerprints entry
	pfpKey       string      // lexicographically first partialFingerprints key
	partials     [][2]string // every partialFingerprints entry, sorted by key

	suppressed    bool
	justification string

	taxa  []taxonRef
	props props
}

// rawLocation is the first location of a result.
type rawLocation struct {
	uri, baseID      string
	artIndex         int // -1 when absent
	startLine        int
	startColumn      int
	endLine          int
	endColumn        int
	snippet          string
	logicalFQN       string
	logicalName      string
	logicalIndex     int // -1 when absent
	hasPhysical      bool
	hasLogicalDirect bool
}
