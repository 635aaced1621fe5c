// Package amass runs one OWASP Amass subdomain enumeration through the
// amass v4 library and writes what it found as amass v3 `enum -json` lines,
// which is what ingest/amass parses:
//
//	{"name":"a.example.test","domain":"example.test","addresses":[{"ip":"127.0.0.1","cidr":"","asn":0,"desc":""}],"tag":"dns","sources":["Brute Forcing"]}
//
// The enumeration asks only the configured resolvers. It uses a small
// systems.System of its own instead of amass's LocalSystem, which would add
// public resolvers (8.8.8.8 among them, which leaks target names) and query
// about ninety passive data sources on the internet. The only data sources
// are amass's brute forcing and, when asked for, alterations and active DNS
// (zone transfers and walks against the domain's own name servers).
//
// Each run keeps its graph in a fresh SQLite database under
// StateDir/run-XXXX and removes it afterwards. Every enumeration ends with
// an idle period of about ten seconds after the last DNS answer: that is
// how amass's pipeline notices it is done.
package amass

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caffix/netmap"
	"github.com/caffix/service"
	"github.com/owasp-amass/amass/v4/datasrcs/scripting"
	"github.com/owasp-amass/amass/v4/enum"
	"github.com/owasp-amass/amass/v4/resources"
	"github.com/owasp-amass/config/config"
	oam "github.com/owasp-amass/open-asset-model"
	"github.com/owasp-amass/open-asset-model/domain"
)

// DefaultQPS is the queries per second per resolver when Config.QPS is zero.
const DefaultQPS = 100

// Config describes one enumeration.
type Config struct {
	// Domains are the root domains to enumerate.
	Domains []string
	// Resolvers are the DNS servers to ask, as ip:port (port 53 when
	// omitted). amass keys its pools by IP only: two resolvers on the same
	// IP with different ports count as one, so local test servers need
	// distinct addresses (127.0.0.2, 127.0.0.3, ...).
	Resolvers []string
	// Wordlist holds the labels tried under each domain by brute forcing.
	// Brute forcing is off when it is empty.
	Wordlist []string
	// Passive asks for passive-only enumeration (data sources, no DNS).
	// starpipe enables no passive data source, since they all query the
	// internet, so Run refuses it.
	Passive bool
	// Active adds zone transfers and zone walks against the name servers
	// of each domain: those servers are contacted directly.
	Active bool
	// Recursive brute forces below each discovered subdomain too.
	Recursive bool
	// Alterations tries variations of discovered names (needs a wordlist
	// or discovered names to alter).
	Alterations bool
	// StateDir holds the run's temporary graph database (os.TempDir()
	// when empty).
	StateDir string
	// Timeout bounds the enumeration (none when zero). When it expires Run
	// writes what was found so far and returns context.DeadlineExceeded.
	Timeout time.Duration
	// QPS is the queries per second per resolver (DefaultQPS when zero).
	QPS int
}

// Stats summarises an enumeration.
type Stats struct {
	// Names is the number of lines written (one per name).
	Names int
	// Addresses is the number of name/address pairs written.
	Addresses int
}

// Errors returned by Run before an enumeration starts.
var (
	ErrNoDomains      = errors.New("no domains")
	ErrNoResolvers    = errors.New("no resolvers")
	ErrPassive        = errors.New("passive enumeration needs internet data sources, which starpipe does not enable")
	ErrNothingToProbe = errors.New("no wordlist and neither alterations nor active DNS: the enumeration would only resolve the root domains")
)

// Source names of the amass scripts Run may enable.
const (
	sourceBrute       = "Brute Forcing"
	sourceAlterations = "Alterations"
	sourceActiveDNS   = "Active DNS"
)

// Record is one output line, in amass v3 `enum -json` form.
type Record struct {
	Name      string    `json:"name"`
	Domain    string    `json:"domain"`
	Addresses []Address `json:"addresses"`
	Tag       string    `json:"tag"`
	Sources   []string  `json:"sources"`
}

// Address is one address of a Record.
type Address struct {
	IP   string `json:"ip"`
	CIDR string `json:"cidr"`
	ASN  int    `json:"asn"`
	Desc string `json:"desc"`
}

// Run enumerates cfg.Domains and writes one JSON line per name found, in
// name order, to out. The lines are written after the enumeration ends.
func Run(ctx context.Context, cfg Config, out io.Writer) (Stats, error) {
	var st Stats
	domains := normaliseDomains(cfg.Domains)
	switch {
	case len(domains) == 0:
		return st, ErrNoDomains
	case cfg.Passive:
		return st, ErrPassive
	case len(cfg.Resolvers) == 0:
		return st, ErrNoResolvers
	case len(cfg.Wordlist) == 0 && !cfg.Alterations && !cfg.Active:
		return st, ErrNothingToProbe
	}
	resolvers, err := normaliseResolvers(cfg.Resolvers)
	if err != nil {
		return st, err
	}
	qps := cfg.QPS
	if qps <= 0 {
		qps = DefaultQPS
	}

	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = os.TempDir()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return st, fmt.Errorf("creating amass state directory: %w", err)
	}
	runDir, err := os.MkdirTemp(stateDir, "run-")
	if err != nil {
		return st, fmt.Errorf("creating amass run directory: %w", err)
	}
	defer os.RemoveAll(runDir)

	ac := config.NewConfig()
	ac.Log = log.New(io.Discard, "", 0)
	ac.Dir = runDir
	// A zero start time: the graph is new for this run, and the library's
	// default (now, at one-second SQLite resolution) drops names stored in
	// the run's first second.
	ac.CollectionStartTime = time.Time{}
	ac.AddDomains(domains...)
	ac.Resolvers = resolvers
	ac.TrustedResolvers = resolvers
	ac.ResolversQPS = qps
	ac.TrustedQPS = qps
	ac.MaxDNSQueries = qps * len(resolvers)
	ac.Wordlist = slices.Clone(cfg.Wordlist)
	ac.BruteForcing = len(cfg.Wordlist) > 0
	ac.Recursive = cfg.Recursive
	ac.MinForRecursive = 0
	ac.Alterations = cfg.Alterations
	ac.Active = cfg.Active
	ac.Passive = false
	var sources []string
	if ac.BruteForcing {
		sources = append(sources, sourceBrute)
	}
	if cfg.Alterations {
		sources = append(sources, sourceAlterations)
	}
	if cfg.Active {
		sources = append(sources, sourceActiveDNS)
	}
	ac.SourceFilter.Include = true
	ac.SourceFilter.Sources = sources

	graph, err := newGraph(filepath.Join(runDir, "amass.sqlite"))
	if err != nil {
		return st, err
	}
	sys, err := newSystem(ac, resolvers, qps, graph)
	if err != nil {
		return st, fmt.Errorf("building amass resolver pool: %w", err)
	}
	defer sys.Shutdown()
	srcs, err := loadSources(sys, sources)
	if err != nil {
		return st, err
	}
	if err := sys.SetDataSources(srcs); err != nil {
		return st, fmt.Errorf("starting amass data sources: %w", err)
	}

	runCtx := ctx
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	enumErr := enum.NewEnumeration(ac, sys, graph).Start(runCtx)
	if enumErr == nil {
		enumErr = runCtx.Err()
	}

	// Collect whatever is in the graph, also after a timeout or
	// cancellation: a partial result is still evidence of what was seen.
	recs, err := collect(context.WithoutCancel(ctx), ac, sys, graph, sources)
	if err != nil {
		return st, err
	}
	enc := json.NewEncoder(out)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return st, fmt.Errorf("writing amass result: %w", err)
		}
		st.Names++
		st.Addresses += len(r.Addresses)
	}
	if enumErr != nil {
		return st, fmt.Errorf("running amass enumeration: %w", enumErr)
	}
	return st, nil
}

// newGraph opens the run's graph database. netmap panics when the
// migrations fail (an unwritable directory, say): turn that into an error.
func newGraph(path string) (g *netmap.Graph, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("opening amass graph %s: %v", path, r)
		}
	}()
	g = netmap.NewGraph("local", path, "")
	if g == nil {
		return nil, fmt.Errorf("opening amass graph %s", path)
	}
	return g, nil
}

// loadSources creates the named amass scripts from the library's embedded
// resources.
func loadSources(sys *system, names []string) ([]service.Service, error) {
	scripts, err := resources.GetDefaultScripts()
	if err != nil {
		return nil, fmt.Errorf("reading amass scripts: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var srcs []service.Service
	for _, script := range scripts {
		name, ok := scriptName(script)
		if !ok || !want[name] {
			continue
		}
		s := scripting.NewScript(script, sys)
		if s == nil {
			return nil, fmt.Errorf("loading amass script %q", name)
		}
		srcs = append(srcs, s)
		delete(want, name)
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("amass scripts not found: %v", slices.Sorted(mapKeys(want)))
	}
	return srcs, nil
}

// scriptName reads the `name = "..."` line of an amass script without
// starting a Lua interpreter for every one of the ~90 embedded scripts.
func scriptName(script string) (string, bool) {
	for line := range strings.Lines(script) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "name" {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// collect reads every in-scope name and its addresses from the graph.
func collect(ctx context.Context, ac *config.Config, sys *system, g *netmap.Graph, sources []string) ([]Record, error) {
	assets, err := g.DB.FindByType(oam.FQDN, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("reading amass names: %w", err)
	}
	byName := map[string]*Record{}
	var names []string
	for _, a := range assets {
		fqdn, ok := a.Asset.(*domain.FQDN)
		if !ok {
			if v, ok2 := a.Asset.(domain.FQDN); ok2 {
				fqdn, ok = &v, true
			}
		}
		if !ok {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(fqdn.Name, "."))
		d := ac.WhichDomain(name)
		if d == "" || byName[name] != nil {
			continue
		}
		byName[name] = &Record{
			Name:      name,
			Domain:    d,
			Addresses: []Address{},
			Tag:       "dns",
			Sources:   slices.Clone(sources),
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pairs, err := g.NamesToAddrs(ctx, time.Time{}, names...)
	if err != nil && len(pairs) > 0 {
		return nil, fmt.Errorf("reading amass addresses: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range pairs {
		if p == nil || p.FQDN == nil || p.Addr == nil {
			continue
		}
		r := byName[strings.ToLower(p.FQDN.Name)]
		ip := p.Addr.Address.String()
		if r == nil || seen[r.Name+" "+ip] {
			continue
		}
		seen[r.Name+" "+ip] = true
		addr := Address{IP: ip}
		// The catch-all entry only exists to keep amass from waiting for
		// ASN data; it says nothing about the address.
		if info := sys.Cache().AddrSearch(ip); info != nil && info.ASN != catchAllASN {
			addr.CIDR, addr.ASN, addr.Desc = info.Prefix, info.ASN, info.Description
		}
		r.Addresses = append(r.Addresses, addr)
	}
	slices.Sort(names)
	recs := make([]Record, 0, len(names))
	for _, n := range names {
		r := byName[n]
		slices.SortFunc(r.Addresses, func(a, b Address) int { return strings.Compare(a.IP, b.IP) })
		recs = append(recs, *r)
	}
	return recs, nil
}

func normaliseDomains(in []string) []string {
	var out []string
	for _, d := range in {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// normaliseResolvers checks that each resolver is an IP address with an
// optional port, adding port 53 where it is missing; amass silently drops
// anything else, which would leave the run without resolvers.
func normaliseResolvers(in []string) ([]string, error) {
	var out []string
	for _, r := range in {
		r = strings.TrimSpace(r)
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			host, port = r, "53"
		}
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("resolver %q: not an IP address", r)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out, nil
}
