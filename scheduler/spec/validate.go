package spec

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/scheduler/cadence"
)

// FieldError reports an invalid or unknown field of a schedule, e.g.
//
//	schedules.yaml:14: schedules[2] (nightly-web).cadence: unknown day "Fun" (use Mon..Sun)
type FieldError struct {
	File     string // the name given to Decode; empty otherwise
	Line     int    // 1-based line in File; 0 when unknown
	Index    int    // position in the file's schedules list; -1 for a lone schedule or the file's top level
	Schedule string // the schedule's name, when it has one
	Field    string // path below the schedule, e.g. "targets.urls[1]"; or a top-level key
	Reason   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Index >= 0:
		fmt.Fprintf(&b, "schedules[%d]", e.Index)
		if e.Schedule != "" {
			fmt.Fprintf(&b, " (%s)", e.Schedule)
		}
		if e.Field != "" {
			b.WriteString("." + e.Field)
		}
	case e.Schedule != "":
		fmt.Fprintf(&b, "schedule %q", e.Schedule)
		if e.Field != "" {
			b.WriteString(": " + e.Field)
		}
	default:
		b.WriteString(e.Field)
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	controlRE = regexp.MustCompile(`^([A-Z]{3}|A&A)-[0-9]{2}$`) // CCM v4 ids; A&A is Audit & Assurance
	schemeRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*::`)
)

// maxNameLen keeps names usable as Kafka keys, label values and file names.
const maxNameLen = 63

// nucleiSeverities are the values nuclei's -severity flag accepts.
var nucleiSeverities = map[string]bool{"info": true, "low": true, "medium": true, "high": true, "critical": true, "unknown": true}

// Validate checks one schedule against itself and against the admin's
// bounds in opts, and returns the first problem as a *FieldError (with
// Index -1), or nil. It makes no look-ups; Admit does those.
func (s Schedule) Validate(opts Options) error {
	v := validator{s: s}
	v.check()
	v.checkPolicy(opts)
	if v.err == nil {
		return nil
	}
	return v.err
}

// ValidateAll validates every schedule and refuses duplicate names. It
// returns the problems (at most one per schedule, plus duplicates) joined
// with errors.Join, each a *FieldError carrying its index.
func ValidateAll(ss []Schedule, opts Options) error {
	var errs []error
	for _, fe := range validateAll(ss, opts) {
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

func validateAll(ss []Schedule, opts Options) []*FieldError {
	var out []*FieldError
	first := map[string]int{}
	for i, s := range ss {
		if err := s.Validate(opts); err != nil {
			fe := err.(*FieldError)
			fe.Index = i
			out = append(out, fe)
			continue
		}
		if j, dup := first[s.Name]; dup {
			out = append(out, &FieldError{Index: i, Schedule: s.Name, Field: "name", Reason: fmt.Sprintf("duplicate name %q (also schedules[%d])", s.Name, j)})
			continue
		}
		first[s.Name] = i
	}
	return out
}

type validator struct {
	s   Schedule
	err *FieldError
}

// bad records the first problem only: later checks often follow from an
// earlier failure and would only add noise.
func (v *validator) bad(field, format string, args ...any) {
	if v.err == nil {
		v.err = &FieldError{Index: -1, Schedule: v.s.Name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
}

func (v *validator) check() {
	s := v.s
	switch {
	case s.Name == "":
		v.bad("name", "required")
	case len(s.Name) > maxNameLen:
		v.bad("name", "longer than %d characters", maxNameLen)
	case !nameRE.MatchString(s.Name):
		// A leading '-' would read as a flag in `starpipe schedules run NAME`.
		v.bad("name", "%q must be lower-case letters, digits and '-', not starting with '-'", s.Name)
	}
	if s.Kind == "" {
		v.bad("kind", "required (external, authenticated or code)")
	} else if _, err := finding.ParseScanKind(string(s.Kind)); err != nil {
		v.bad("kind", "unknown kind %q (use external, authenticated or code)", s.Kind)
	}
	v.checkTargets()
	v.checkSettings()
	switch {
	case s.Kind == finding.KindAuthenticated && strings.TrimSpace(s.Credential) == "":
		v.bad("credential", "required for authenticated scans (the name of a vault credential)")
	case s.Kind != finding.KindAuthenticated && s.Credential != "":
		v.bad("credential", "only authenticated scans use a credential")
	}
	v.checkWhen()
	seen := map[string]bool{}
	for i, c := range s.Controls {
		f := fmt.Sprintf("controls[%d]", i)
		switch {
		case !controlRE.MatchString(c):
			v.bad(f, "%q is not a CCM control id like TVM-07", c)
		case seen[c]:
			v.bad(f, "duplicate control %q", c)
		}
		seen[c] = true
	}
	if s.Environment != "" {
		if r := environmentProblem(s.Environment); r != "" {
			v.bad("environment", "%s", r)
		}
	}
}

func (v *validator) checkTargets() {
	t := v.s.Targets
	switch v.s.Kind {
	case finding.KindExternal:
		if len(t.Domains)+len(t.URLs) == 0 {
			v.bad("targets", "an external scan needs domains or urls")
		}
		if len(t.Repositories) > 0 {
			v.bad("targets.repositories", "only code scans scan repositories")
		}
	case finding.KindAuthenticated:
		if len(t.URLs) == 0 {
			v.bad("targets.urls", "an authenticated scan needs urls")
		}
		if len(t.Domains) > 0 {
			v.bad("targets.domains", "domain discovery runs only in external scans")
		}
		if len(t.Repositories) > 0 {
			v.bad("targets.repositories", "only code scans scan repositories")
		}
	case finding.KindCode:
		if len(t.Repositories) == 0 {
			v.bad("targets.repositories", "a code scan needs repositories")
		}
		if len(t.Domains) > 0 {
			v.bad("targets.domains", "a code scan scans repositories only")
		}
		if len(t.URLs) > 0 {
			v.bad("targets.urls", "a code scan scans repositories only")
		}
	}
	v.eachUnique("targets.domains", t.Domains, domainProblem)
	v.eachUnique("targets.urls", t.URLs, urlProblem)
	v.eachUnique("targets.repositories", t.Repositories, repositoryProblem)
}

// eachUnique applies problem to every item and refuses repeats.
func (v *validator) eachUnique(field string, items []string, problem func(string) string) {
	seen := map[string]bool{}
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		if r := problem(it); r != "" {
			v.bad(f, "%s", r)
		} else if seen[it] {
			v.bad(f, "duplicate %q", it)
		}
		seen[it] = true
	}
}

func (v *validator) checkSettings() {
	s := v.s
	// Settings that would be ignored are errors, like unknown keys: a
	// reader of the file would otherwise believe they take effect.
	if s.Kind == finding.KindCode && !s.Nuclei.isZero() {
		v.bad("nuclei", "nuclei settings apply only to external and authenticated scans")
	}
	if !s.Amass.isZero() && (s.Kind != finding.KindExternal || len(s.Targets.Domains) == 0) {
		v.bad("amass", "amass settings apply only to external scans with targets.domains")
	}
	if s.Kind != finding.KindCode && !s.Code.isZero() {
		v.bad("code", "code settings apply only to code scans")
	}

	n := s.Nuclei
	v.eachUnique("nuclei.template_dirs", n.TemplateDirs, plainProblem)
	v.eachUnique("nuclei.tags", n.Tags, tagProblem)
	v.eachUnique("nuclei.exclude_tags", n.ExcludeTags, tagProblem)
	v.eachUnique("nuclei.severities", n.Severities, func(x string) string {
		if !nucleiSeverities[x] {
			return fmt.Sprintf("unknown severity %q (use info, low, medium, high, critical or unknown)", x)
		}
		return ""
	})

	a := s.Amass
	v.eachUnique("amass.wordlist", a.Wordlist, plainProblem)
	v.eachUnique("amass.resolvers", a.Resolvers, func(x string) string {
		if _, err := netip.ParseAddr(x); err == nil {
			return ""
		}
		if _, err := netip.ParseAddrPort(x); err == nil {
			return ""
		}
		return fmt.Sprintf("%q is not an IP address or IP:port", x)
	})

	if s.Timeout < 0 {
		v.bad("timeout", "negative")
	}

	c := s.Code
	if c.Analyzer != "" {
		if r := plainProblem(c.Analyzer); r != "" {
			v.bad("code.analyzer", "%s", r)
		}
	}
	if c.Timeout < 0 {
		v.bad("code.timeout", "negative")
	}
	if c.MaxOutputBytes < 0 {
		v.bad("code.max_output_bytes", "negative")
	}
}

func (v *validator) checkWhen() {
	s := v.s
	loc, err := s.Location()
	if err != nil {
		v.bad("timezone", "%v", err)
		return
	}
	anchor, err := s.StartDate()
	if err != nil {
		v.bad("start", "%v", err)
		return
	}
	biweekly := strings.HasPrefix(strings.ToLower(strings.TrimSpace(s.Cadence)), "biweekly@")
	switch {
	case strings.TrimSpace(s.Cadence) == "":
		v.bad("cadence", "required (e.g. daily@02:00, weekly@Mon 06:00, monthly@1 03:00 or a cron spec)")
		return
	case biweekly && s.Start == "":
		v.bad("start", "required for a biweekly cadence (a YYYY-MM-DD date in the first week that fires)")
		return
	case !biweekly && s.Start != "":
		v.bad("start", "only biweekly cadences use a start date")
		return
	}
	if _, err := cadence.Parse(s.Cadence, loc, anchor); err != nil {
		var pe *cadence.ParseError
		if errors.As(err, &pe) {
			v.bad("cadence", "%s", pe.Reason)
		} else {
			v.bad("cadence", "%v", err)
		}
	}
}

func plainProblem(x string) string {
	if strings.TrimSpace(x) == "" {
		return "empty"
	}
	if hasControl(x) {
		return "contains a control character"
	}
	return ""
}

func tagProblem(x string) string {
	if r := plainProblem(x); r != "" {
		return r
	}
	// nuclei takes tags as one comma-separated flag value.
	if strings.ContainsAny(x, ", \t") {
		return fmt.Sprintf("%q contains ',' or white space (give each tag as its own item)", x)
	}
	return ""
}

func hasControl(x string) bool {
	for _, r := range x {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func domainProblem(d string) string {
	switch {
	case strings.Contains(d, "://"):
		return fmt.Sprintf("%q: want a bare domain like example.com, not a URL (URLs go under targets.urls)", d)
	case strings.HasPrefix(d, "*."):
		return fmt.Sprintf("%q: want the root domain without a wildcard; discovery finds the subdomains", d)
	}
	if !isDomain(d) {
		return fmt.Sprintf("%q is not a domain name like example.com", d)
	}
	return ""
}

func isDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func urlProblem(u string) string {
	if hasControl(u) || strings.ContainsAny(u, " ") {
		return fmt.Sprintf("%q contains white space or a control character", u)
	}
	if strings.Contains(u, "://") {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Sprintf("%q is not a valid URL", u)
		}
		if p.Scheme != "http" && p.Scheme != "https" {
			return fmt.Sprintf("%q: scheme %q not supported (use http or https)", u, p.Scheme)
		}
		if p.Hostname() == "" {
			return fmt.Sprintf("%q has no host", u)
		}
		if p.User != nil {
			// Secrets in a schedule end up in logs and the API; they belong in the vault.
			return fmt.Sprintf("%s: user info in URLs is not allowed; use a vault credential", p.Redacted())
		}
		return ""
	}
	host, port, err := net.SplitHostPort(u)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is neither an http(s) URL nor host:port", u)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port %q is not a number from 1 to 65535", u, port)
	}
	return ""
}

func repositoryProblem(r string) string {
	switch {
	case strings.TrimSpace(r) == "":
		return "empty"
	case hasControl(r):
		return "contains a control character"
	case strings.HasPrefix(r, "-"):
		// git would read it as an option (--upload-pack=... runs a command).
		return fmt.Sprintf("%q starts with '-'", r)
	case schemeRE.MatchString(r):
		// git's transport::address form invokes remote helpers; ext:: runs
		// arbitrary commands.
		return fmt.Sprintf("%q uses git's transport::address form, which is not allowed", r)
	}
	if strings.Contains(r, "://") {
		p, err := url.Parse(r)
		if err != nil {
			return fmt.Sprintf("%q is not a valid URL", r)
		}
		switch p.Scheme {
		case "https", "http", "ssh", "git":
			if p.Host == "" {
				return fmt.Sprintf("%q has no host", r)
			}
		case "file":
		default:
			return fmt.Sprintf("%q: scheme %q not supported (use https, ssh, git, file or a local path)", r, p.Scheme)
		}
		if _, hasPass := p.User.Password(); hasPass {
			return fmt.Sprintf("%s: passwords in repository URLs are not allowed", p.Redacted())
		}
	}
	return ""
}

// cvssEnvironmental lists the CVSS 3.1 environmental metrics and their
// values (X = not defined).
var cvssEnvironmental = map[string]string{
	"CR": "LMHX", "IR": "LMHX", "AR": "LMHX",
	"MAV": "NALPX", "MAC": "LHX", "MPR": "NLHX", "MUI": "NRX", "MS": "UCX",
	"MC": "NLHX", "MI": "NLHX", "MA": "NLHX",
}

func environmentProblem(env string) string {
	seen := map[string]bool{}
	for _, part := range strings.Split(env, "/") {
		name, val, ok := strings.Cut(part, ":")
		allowed, known := cvssEnvironmental[name]
		switch {
		case !ok || name == "":
			return fmt.Sprintf("%q is not METRIC:VALUE (e.g. CR:H/IR:H)", part)
		case !known:
			return fmt.Sprintf("%q is not a CVSS 3.1 environmental metric (use CR, IR, AR, MAV, MAC, MPR, MUI, MS, MC, MI, MA)", name)
		case len(val) != 1 || !strings.Contains(allowed, val):
			return fmt.Sprintf("%s:%s: value must be one of %s", name, val, strings.Join(strings.Split(allowed, ""), ", "))
		case seen[name]:
			return fmt.Sprintf("%s given twice", name)
		}
		seen[name] = true
	}
	return ""
}
