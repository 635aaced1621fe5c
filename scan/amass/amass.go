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
//
// This package describes an enumeration and imports nothing of amass; the
// engine that links the library is scan/amass/engine, which only
// cmd/starpipe-scanner imports (the worker runs it in that child process
// through scan/scanexec).
package amass

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
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
	// internet, so Check refuses it.
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

// Errors returned by Check (and so before an enumeration starts).
var (
	ErrNoDomains      = errors.New("no domains")
	ErrNoResolvers    = errors.New("no resolvers")
	ErrPassive        = errors.New("passive enumeration needs internet data sources, which starpipe does not enable")
	ErrNothingToProbe = errors.New("no wordlist and neither alterations nor active DNS: the enumeration would only resolve the root domains")
)

// Source names of the amass scripts the engine may enable.
const (
	SourceBrute       = "Brute Forcing"
	SourceAlterations = "Alterations"
	SourceActiveDNS   = "Active DNS"
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

// Check returns cfg with its domains normalised (lower case, no trailing
// dot, no duplicates) and its resolvers as ip:port, or what is wrong with
// it. It touches neither the disk nor the network.
func (cfg Config) Check() (Config, error) {
	cfg.Domains = normaliseDomains(cfg.Domains)
	switch {
	case len(cfg.Domains) == 0:
		return cfg, ErrNoDomains
	case cfg.Passive:
		return cfg, ErrPassive
	case len(cfg.Resolvers) == 0:
		return cfg, ErrNoResolvers
	case len(cfg.Wordlist) == 0 && !cfg.Alterations && !cfg.Active:
		return cfg, ErrNothingToProbe
	}
	resolvers, err := normaliseResolvers(cfg.Resolvers)
	if err != nil {
		return cfg, err
	}
	cfg.Resolvers = resolvers
	return cfg, nil
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
