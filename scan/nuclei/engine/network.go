package engine

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/projectdiscovery/fastdialer/fastdialer"
	nucleilib "github.com/projectdiscovery/nuclei/v3/lib"
	"github.com/projectdiscovery/rawhttp"

	"github.com/starpipe/starpipe/internal/netpolicy"
)

// Dialer settings of the policy dialer; they replace fastdialer's
// DialerTimeout and DialerKeepAlive, which fastdialer ignores once it is
// given a dialer.
const (
	dialTimeout   = 10 * time.Second
	dialKeepAlive = 10 * time.Second
)

var networkMu sync.Mutex

// enforceNetwork makes every connection of engines created after it
// (in this process) pass np, and returns the SDK option that adds np's
// refused ranges to the engine's exclude list.
//
// What takes effect, read in nuclei v3.10.0: protocolstate.initDialers
// builds each engine's fastdialer from a copy of fastdialer.DefaultOptions
// and only replaces its Dialer when a source IP, an interface or a SOCKS
// proxy is configured (none is here). fastdialer then dials every address
// it resolved through that *net.Dialer (directly, or through the dialwrap
// it caches per host), so the dialer's Control sees each ip:port before
// the connection is made: HTTP (also the rawhttp client of unsafe
// templates, and every redirect hop), network, JavaScript and TLS
// templates all dial through it. The exclude list is a second layer:
// initDialers copies ExcludeTargets into fastdialer's network policy
// Deny list (checked after resolution) and the input provider drops
// excluded targets; with scan.allow_public false a deny list cannot say
// "everything but these", so only Control applies then.
//
// DNS templates and name resolution go to the configured resolvers over
// retryabledns, not through the dialer: checkResolvers bounds those.
func enforceNetwork(np *netpolicy.Policy) nucleilib.NucleiSDKOptions {
	networkMu.Lock()
	fastdialer.DefaultOptions.Dialer = np.Dialer(&net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive})
	networkMu.Unlock()
	var exclude []string
	for _, p := range np.DeniedPrefixes() {
		exclude = append(exclude, p.String())
	}
	return func(e *nucleilib.NucleiEngine) error {
		o := e.Options()
		o.ExcludeTargets = append(o.ExcludeTargets, exclude...)
		return nil
	}
}

// noRedirects keeps an authenticated scan's requests on the URLs its
// templates build from the target: a redirect is not followed at all, so
// the credential's headers, which nuclei adds to every request and
// net/http copies onto redirects to the same host (also from https to
// http) and, for custom headers, to any host, never leave. DisableRedirects
// overrides the templates' redirects/host-redirects in the standard
// client; unsafe (raw) templates go through rawhttp, which follows
// redirects while its counter is at most MaxRedirects: -1 stops it at
// once. Process-wide, set before the engine is created: the scanner runs
// one scan per process.
func noRedirects() nucleilib.NucleiSDKOptions {
	networkMu.Lock()
	rawhttp.DefaultOptions.MaxRedirects = -1
	networkMu.Unlock()
	return func(e *nucleilib.NucleiEngine) error {
		o := e.Options()
		o.DisableRedirects = true
		o.FollowRedirects, o.FollowHostRedirects = false, false
		o.MaxRedirects = 0
		return nil
	}
}

// checkResolvers refuses configured resolvers that np does not allow:
// they are chosen by the schedule, and DNS queries do not go through the
// policy dialer. The system's resolvers (used when none are configured)
// are the host's own infrastructure and are not checked.
func checkResolvers(np *netpolicy.Policy, resolvers []string) error {
	for _, r := range resolvers {
		a, err := resolverAddr(r)
		if err != nil {
			return err
		}
		if err := np.CheckAddr(a); err != nil {
			return fmt.Errorf("resolver %s: %w", r, err)
		}
	}
	return nil
}

func resolverAddr(r string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(r); err == nil {
		return ap.Addr(), nil
	}
	if a, err := netip.ParseAddr(r); err == nil {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("resolver %q is not an ip or ip:port", r)
}

// checkLiteralTargets refuses a target whose host is an address np does
// not allow. Connections to it would be refused anyway, but nuclei reports
// refused connections as "no result", and an empty scan would read as a
// clean one. (Names are resolved by nuclei; the worker's probe checks
// them before the scan.)
func checkLiteralTargets(np *netpolicy.Policy, targets []string) error {
	for _, t := range targets {
		host := t
		if u, err := url.Parse(t); err == nil && u.Host != "" {
			host = u.Hostname()
		} else if h, _, err := net.SplitHostPort(t); err == nil {
			host = h
		}
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if err != nil {
			continue
		}
		if err := np.CheckAddr(a); err != nil {
			return fmt.Errorf("target %s: %w", t, err)
		}
	}
	return nil
}
