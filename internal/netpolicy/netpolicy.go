// Package netpolicy decides which network addresses scans may reach. The
// admin configuration (scan.allow_networks, scan.allow_public) builds a
// Policy; schedules are checked against it when they are saved, and the
// scanner's dialers check every address again at connect time, so that
// names resolved later (targets, names amass discovers, redirects) cannot
// lead a scan to cloud metadata, loopback or private networks.
//
// It imports only the standard library so that the scanner child process
// and schedule validation can both use it cheaply.
package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// blocked are the ranges that are never "public": a scan reaches them only
// when an allowed prefix covers the address.
var blocked = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (\"this network\")"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata lives here)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (TEST-NET-1)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (TEST-NET-2)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (TEST-NET-3)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (hides an IPv4 address)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (ULA; includes fd00:ec2::254, cloud metadata)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// embedsIPv4 are IPv6 ranges whose low 32 bits (NAT64) or bits 16..48
// (6to4) carry an IPv4 address that the packet really reaches; that
// address must pass the policy as well.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	nat64l = netip.MustParsePrefix("64:ff9b:1::/48")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// Policy says which addresses scans may reach. The zero value and nil
// allow public addresses only.
type Policy struct {
	allow    []netip.Prefix
	noPublic bool
}

// Options build a Policy.
type Options struct {
	// Allow lists the networks scans may reach beyond the public internet
	// (or instead of it, with DenyPublic), e.g. 10.20.0.0/16 or
	// 127.0.0.0/8 for a local demo.
	Allow []netip.Prefix
	// DenyPublic limits scans to Allow.
	DenyPublic bool
}

// New returns the policy opt describes.
func New(opt Options) *Policy {
	allow := make([]netip.Prefix, 0, len(opt.Allow))
	for _, p := range opt.Allow {
		allow = append(allow, p.Masked())
	}
	return &Policy{allow: allow, noPublic: opt.DenyPublic}
}

// Options returns what p was built from, so that the policy can travel to
// another process (the scanner child) and be rebuilt there with New.
func (p *Policy) Options() Options {
	if p == nil {
		return Options{}
	}
	return Options{Allow: append([]netip.Prefix(nil), p.allow...), DenyPublic: p.noPublic}
}

// ParsePrefixes parses CIDRs ("10.0.0.0/8", "fd00::/8") and bare addresses
// (one host), naming the one at fault.
func ParsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, c := range cidrs {
		c = strings.TrimSpace(c)
		if p, err := netip.ParsePrefix(c); err == nil {
			if p != p.Masked() {
				return nil, fmt.Errorf("[%d]: %q has host bits set (did you mean %s?)", i, c, p.Masked())
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(c)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("[%d]: %q is not a CIDR like 10.0.0.0/8 or an IP address", i, c)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// DeniedError reports an address the policy refuses.
type DeniedError struct {
	Host   string // the name it was resolved from; empty for a literal
	Addr   netip.Addr
	Reason string
}

func (e *DeniedError) Error() string {
	if e.Host != "" && e.Host != e.Addr.String() {
		return fmt.Sprintf("%s resolves to %s, which is %s and not in scan.allow_networks", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("%s is %s and not in scan.allow_networks", e.Addr, e.Reason)
}

// ErrDenied is matched by every *DeniedError (errors.Is).
var ErrDenied = errors.New("address not allowed by the scan network policy")

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

func (p *Policy) allowed(a netip.Addr) bool {
	if p == nil {
		return false
	}
	for _, pr := range p.allow {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// CheckAddr reports whether scans may reach a; the error is a
// *DeniedError.
func (p *Policy) CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return &DeniedError{Addr: a, Reason: "not a valid address"}
	}
	a = a.WithZone("").Unmap()
	if p.allowed(a) {
		return nil
	}
	if p != nil && p.noPublic {
		return &DeniedError{Addr: a, Reason: "outside the allowed networks (scan.allow_public is false)"}
	}
	for _, b := range blocked {
		if b.prefix.Contains(a) {
			return &DeniedError{Addr: a, Reason: b.what}
		}
	}
	// An IPv6 address that carries an IPv4 one reaches that IPv4 host.
	if inner, ok := embeddedIPv4(a); ok {
		if err := p.CheckAddr(inner); err != nil {
			return &DeniedError{Addr: a, Reason: fmt.Sprintf("an IPv6 form of %s (%s)", inner, err.(*DeniedError).Reason)}
		}
	}
	return nil
}

func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case nat64l.Contains(a):
		// RFC 8215 local-use NAT64: the address sits in the low 32 bits
		// for a /96 layout, which is what deployments use.
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// Resolver looks names up; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckHost checks an IP literal, or every address host resolves to
// through r (net.DefaultResolver when nil): one refused address refuses
// the host, because the scanner may connect to any of them.
func (p *Policy) CheckHost(ctx context.Context, r Resolver, host string) error {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return p.CheckAddr(a)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", h, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("resolving %s: no addresses", h)
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			de := err.(*DeniedError)
			de.Host = h
			return de
		}
	}
	return nil
}

// Control is a net.Dialer Control function: it runs after name resolution,
// for every address the dialer tries, and refuses the connection before it
// is made when the address is not allowed. Set it on every dialer that
// scans use (nuclei's fastdialer, HTTP clients, amass's resolvers' pool
// when the resolvers are schedule-chosen), never on the one that reaches
// the system resolver.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return fmt.Errorf("scan network policy: network %q is not allowed", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("scan network policy: %q is not an ip:port: %w", address, err)
	}
	if err := p.CheckAddr(ap.Addr()); err != nil {
		return fmt.Errorf("scan network policy: connection to %s refused: %w", address, err)
	}
	return nil
}

// Dialer returns a copy of base (a zero net.Dialer when nil) whose Control
// enforces p and then runs base's own Control, if any.
func (p *Policy) Dialer(base *net.Dialer) *net.Dialer {
	d := &net.Dialer{}
	if base != nil {
		*d = *base
	}
	prev, prevCtx := d.Control, d.ControlContext
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		if err := p.Control(network, address, c); err != nil {
			return err
		}
		switch {
		case prevCtx != nil:
			return prevCtx(ctx, network, address, c)
		case prev != nil:
			return prev(network, address, c)
		}
		return nil
	}
	return d
}

// DeniedPrefixes returns the networks p refuses, as a list of prefixes
// that excludes the allowed ones: the form deny-list based dialers take
// (nuclei's fastdialer Deny / ExcludeTargets). With DenyPublic it returns
// nil, because a deny list cannot express "everything but Allow"; use
// Control there.
func (p *Policy) DeniedPrefixes() []netip.Prefix {
	if p != nil && p.noPublic {
		return nil
	}
	var out []netip.Prefix
	for _, b := range blocked {
		out = append(out, subtract(b.prefix, p.allowList())...)
	}
	return out
}

func (p *Policy) allowList() []netip.Prefix {
	if p == nil {
		return nil
	}
	return p.allow
}

// subtract returns the parts of x that no prefix in minus covers.
func subtract(x netip.Prefix, minus []netip.Prefix) []netip.Prefix {
	for _, m := range minus {
		if m.Addr().Is4() != x.Addr().Is4() || !m.Overlaps(x) {
			continue
		}
		if m.Bits() <= x.Bits() {
			return nil // m covers x
		}
		// m is inside x: split x in halves and subtract from each.
		lo := netip.PrefixFrom(x.Addr(), x.Bits()+1)
		b := x.Addr().AsSlice()
		bit := x.Bits()
		b[bit/8] |= 0x80 >> (bit % 8)
		hiAddr, _ := netip.AddrFromSlice(b)
		hi := netip.PrefixFrom(hiAddr, x.Bits()+1)
		return append(subtract(lo, minus), subtract(hi, minus)...)
	}
	return []netip.Prefix{x}
}
