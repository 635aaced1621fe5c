package spec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/internal/wordlist"
	"github.com/starpipe/starpipe/vault"
)

// Options carry what validating a schedule needs from outside it: the
// admin configuration that bounds what a schedule may ask for (DESIGN.md,
// "Trust boundaries"), and for Admit the look-ups that need the network or
// the database. The zero value is the strictest: no analysers, no word
// list directory, public networks only.
type Options struct {
	// Analyzers are the names of the analysers configured by an admin
	// (config analyzers:); a code schedule must name one of them.
	Analyzers []string
	// WordlistDir is amass.wordlist_dir; empty refuses amass.wordlist_name.
	WordlistDir string
	// Network says where scans may go (scan.allow_networks); nil allows
	// public addresses only.
	Network *netpolicy.Policy

	// Resolver resolves target host names in Admit; nil leaves names to
	// the check at connect time.
	Resolver netpolicy.Resolver
	// Credentials looks up where a credential may be sent, for Admit; nil
	// skips the credential checks (offline validation of a file only).
	Credentials CredentialScopes
}

// CredentialScopes says where a named credential may be sent; an unknown
// name wraps ErrUnknownCredential. credentials.ScopeLookup implements it.
type CredentialScopes interface {
	CredentialScope(ctx context.Context, name string) (vault.Scope, error)
}

// ErrUnknownCredential is wrapped by CredentialScopes for a name that is
// not stored.
var ErrUnknownCredential = errors.New("unknown credential")

// admitResolveBudget bounds the name look-ups of one Admit: a save must
// not hang on a slow resolver, and names are checked again at connect
// time anyway.
const admitResolveBudget = 5 * time.Second

// Admit runs the checks of a schedule that need the outside world, after
// Validate: every target name that resolves must resolve to allowed
// addresses only (names that do not resolve now are checked when the
// scanner connects), and the schedule's credential must exist and permit
// every target it would be sent to. Problems are *FieldError (Index -1);
// other errors (the database is unreachable) are returned as they are.
func Admit(ctx context.Context, s Schedule, opts Options) error {
	if opts.Resolver != nil {
		rctx, cancel := context.WithTimeout(ctx, admitResolveBudget)
		defer cancel()
		for field, host := range networkHosts(s) {
			if _, err := netip.ParseAddr(host); err == nil {
				continue // literals were checked by Validate
			}
			err := opts.Network.CheckHost(rctx, opts.Resolver, host)
			var de *netpolicy.DeniedError
			if errors.As(err, &de) {
				return &FieldError{Index: -1, Schedule: s.Name, Field: field, Reason: de.Error()}
			}
			// A name that does not resolve (yet) is allowed here.
		}
	}
	if s.Credential == "" || opts.Credentials == nil {
		return nil
	}
	sc, err := opts.Credentials.CredentialScope(ctx, s.Credential)
	if errors.Is(err, ErrUnknownCredential) {
		return &FieldError{Index: -1, Schedule: s.Name, Field: "credential",
			Reason: fmt.Sprintf("no credential named %q; store it first, with the URL prefixes it may be sent to (targets)", s.Credential)}
	}
	if err != nil {
		return fmt.Errorf("schedule %s: looking up credential %q: %w", s.Name, s.Credential, err)
	}
	if len(sc.Targets) == 0 {
		return &FieldError{Index: -1, Schedule: s.Name, Field: "credential",
			Reason: fmt.Sprintf("credential %q has no targets, so it may be sent nowhere; an admin sets them with `starpipe credentials targets --name %s --target URL`", s.Credential, s.Credential)}
	}
	for field, target := range credentialTargets(s) {
		if err := sc.Permits(target); err != nil {
			return &FieldError{Index: -1, Schedule: s.Name, Field: field,
				Reason: fmt.Sprintf("credential %q may not be sent to %s: %v", s.Credential, target, err)}
		}
	}
	return nil
}

// networkHosts yields the field and host of every target the scanner
// connects to directly: URLs and network repositories.
func networkHosts(s Schedule) func(yield func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for i, u := range s.Targets.URLs {
			if h := hostOf(u); h != "" && !yield(fmt.Sprintf("targets.urls[%d]", i), h) {
				return
			}
		}
		for i, r := range s.Targets.Repositories {
			if h := repositoryHost(r); h != "" && !yield(fmt.Sprintf("targets.repositories[%d]", i), h) {
				return
			}
		}
	}
}

// credentialTargets yields the field and URL of every target the
// schedule's credential would be sent to: the URLs of an authenticated
// scan, and the http(s) repositories a code scan clones with it.
func credentialTargets(s Schedule) func(yield func(string, string) bool) {
	return func(yield func(string, string) bool) {
		switch s.Kind {
		case finding.KindAuthenticated:
			for i, u := range s.Targets.URLs {
				if !strings.Contains(u, "://") {
					u = "http://" + u
				}
				if !yield(fmt.Sprintf("targets.urls[%d]", i), u) {
					return
				}
			}
		case finding.KindCode:
			for i, r := range s.Targets.Repositories {
				if p, err := url.Parse(r); err == nil && (p.Scheme == "http" || p.Scheme == "https") {
					if !yield(fmt.Sprintf("targets.repositories[%d]", i), r) {
						return
					}
				}
			}
		}
	}
}

// hostOf returns the host of a URL target or host:port.
func hostOf(target string) string {
	if strings.Contains(target, "://") {
		if p, err := url.Parse(target); err == nil {
			return p.Hostname()
		}
		return ""
	}
	h, _, err := net.SplitHostPort(target)
	if err != nil {
		return ""
	}
	return h
}

// repositoryHost returns the host of a network repository, "" for local
// paths and file URLs.
func repositoryHost(r string) string {
	if !strings.Contains(r, "://") {
		return ""
	}
	p, err := url.Parse(r)
	if err != nil || p.Scheme == "file" {
		return ""
	}
	return p.Hostname()
}

// checkPolicy applies the options that need no look-up: analysers,
// word lists, fields schedules may no longer carry, and the network
// policy for IP literals.
func (v *validator) checkPolicy(opts Options) {
	s := v.s
	c := s.Code
	if len(c.Command) > 0 {
		v.bad("code.command", "a schedule cannot carry a command; name an analyser an admin defined in the daemon configuration with code.analyzer%s", analyzerHint(opts.Analyzers))
	}
	if s.Kind == finding.KindCode {
		switch {
		case strings.TrimSpace(c.Analyzer) == "":
			v.bad("code.analyzer", "a code scan names the analyser to run%s", analyzerHint(opts.Analyzers))
		case !slices.Contains(opts.Analyzers, c.Analyzer):
			v.bad("code.analyzer", "no analyser named %q is configured%s", c.Analyzer, analyzerHint(opts.Analyzers))
		}
	}
	a := s.Amass
	if a.WordlistFile != "" {
		v.bad("amass.wordlist_file", "a schedule cannot read files from the host; name a list in amass.wordlist_dir with amass.wordlist_name, or give the words inline in amass.wordlist")
	}
	if a.WordlistName != "" {
		if len(a.Wordlist) > 0 {
			v.bad("amass.wordlist_name", "give wordlist or wordlist_name, not both")
		} else if _, err := wordlist.Path(opts.WordlistDir, a.WordlistName); err != nil {
			v.bad("amass.wordlist_name", "%v", err)
		}
	}
	for i, r := range a.Resolvers {
		ap, err := netip.ParseAddrPort(r)
		if err != nil {
			addr, err2 := netip.ParseAddr(r)
			if err2 != nil {
				continue // refused by checkSettings
			}
			ap = netip.AddrPortFrom(addr, 53)
		}
		if err := opts.Network.CheckAddr(ap.Addr()); err != nil {
			v.bad(fmt.Sprintf("amass.resolvers[%d]", i), "%v", err)
		}
	}
	for field, host := range networkHosts(s) {
		if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			if err := opts.Network.CheckAddr(addr); err != nil {
				v.bad(field, "%v", err)
			}
		}
	}
	for i, d := range s.Targets.Domains {
		if _, err := netip.ParseAddr(d); err == nil {
			v.bad(fmt.Sprintf("targets.domains[%d]", i), "%q is an IP address, not a domain (addresses go under targets.urls)", d)
		}
	}
}

func analyzerHint(names []string) string {
	if len(names) == 0 {
		return " (none is configured: an admin adds them under analyzers: in the daemon configuration)"
	}
	return " (configured: " + strings.Join(names, ", ") + ")"
}
