package amass

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/parse"
)

// Node types as Amass v4 names them (the text output writes
// RIROrganization, the database RIROrg).
const (
	typeFQDN     = "FQDN"
	typeIP       = "IPAddress"
	typeNetblock = "Netblock"
	typeASN      = "ASN"
	typeRIROrg   = "RIROrganization"
)

func canonicalType(t string) string {
	if t == "RIROrg" {
		return typeRIROrg
	}
	return t
}

type nodeKey struct{ typ, value string }

type node struct {
	typ      string
	value    string
	addrs    []string // FQDN: resolved addresses
	netblock string   // IP: containing netblock
	asn      int      // Netblock: announcing AS; ASN: its number
	desc     string   // ASN: owner
}

// graph collects v4 nodes and relations. Relations arrive in any order, so
// assets can only be emitted once the whole graph is read; the MaxResults
// limit bounds how many nodes it holds.
type graph struct {
	nodes map[nodeKey]*node
	order []*node
	max   int
}

func newGraph(max int) *graph {
	return &graph{nodes: map[nodeKey]*node{}, max: max}
}

// add returns the node for (typ, value), creating it when new. Node types
// starpipe has no asset for (RIROrganization, email addresses, ...) are
// kept only as far as relations need them.
func (g *graph) add(typ, value string) (*node, error) {
	typ = canonicalType(typ)
	value = normValue(typ, value)
	k := nodeKey{typ, value}
	if n, ok := g.nodes[k]; ok {
		return n, nil
	}
	if g.max >= 0 && len(g.nodes) >= g.max {
		return nil, fmt.Errorf("more than %d graph nodes: %w", g.max, parse.ErrLimit)
	}
	n := &node{typ: typ, value: value}
	if typ == typeASN {
		n.asn, _ = strconv.Atoi(value)
	}
	g.nodes[k] = n
	g.order = append(g.order, n)
	return n, nil
}

// relate records what starpipe's assets carry from a relation; other
// relations (cname, ns, mx, ...) only contribute their nodes.
func (g *graph) relate(from *node, rel string, to *node) {
	switch {
	case from.typ == typeFQDN && to.typ == typeIP && (rel == "a_record" || rel == "aaaa_record"):
		if !slices.Contains(from.addrs, to.value) {
			from.addrs = append(from.addrs, to.value)
		}
	case from.typ == typeNetblock && to.typ == typeIP && rel == "contains":
		to.netblock = from.value
	case from.typ == typeASN && to.typ == typeNetblock && rel == "announces":
		to.asn = from.asn
	case from.typ == typeASN && to.typ == typeRIROrg && rel == "managed_by":
		from.desc = to.value
	}
}

// emit sends the assets: names first, then addresses, netblocks and
// autonomous systems, each in the order first seen, so output is
// deterministic.
func (g *graph) emit(domain string, send func(*finding.Asset) error) error {
	netblockASN := map[string]int{}
	for _, n := range g.order {
		if n.typ == typeNetblock {
			netblockASN[n.value] = n.asn
		}
	}
	for _, typ := range []string{typeFQDN, typeIP, typeNetblock, typeASN} {
		for _, n := range g.order {
			if n.typ != typ {
				continue
			}
			var a *finding.Asset
			switch typ {
			case typeFQDN:
				addrs := slices.Clone(n.addrs)
				slices.Sort(addrs)
				a = &finding.Asset{Type: finding.AssetFQDN, Value: n.value, Domain: domainOf(n.value, domain), Addresses: addrs}
			case typeIP:
				a = &finding.Asset{Type: finding.AssetIP, Value: n.value, Netblock: n.netblock, ASN: netblockASN[n.netblock]}
			case typeNetblock:
				a = &finding.Asset{Type: finding.AssetNetblock, Value: n.value, ASN: n.asn}
			case typeASN:
				a = &finding.Asset{Type: finding.AssetASN, Value: n.value, ASN: n.asn, Description: n.desc}
			}
			if err := send(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// domainOf names the root domain of a v4 name when the caller's scope says
// what it is; v4 output does not carry it.
func domainOf(name, scope string) string {
	scope = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(scope)), ".")
	if scope != "" && (name == scope || strings.HasSuffix(name, "."+scope)) {
		return scope
	}
	return ""
}

// normValue puts names in lower case without the trailing dot and writes
// addresses and prefixes canonically, so that one asset has one key.
func normValue(typ, v string) string {
	v = strings.TrimSpace(v)
	switch typ {
	case typeFQDN:
		return strings.TrimSuffix(strings.ToLower(v), ".")
	case typeIP:
		if a, err := netip.ParseAddr(v); err == nil {
			return a.String()
		}
	case typeNetblock:
		if p, err := netip.ParsePrefix(v); err == nil {
			return p.String()
		}
	case typeASN:
		v = strings.TrimPrefix(strings.ToUpper(v), "AS")
		if n, err := strconv.Atoi(v); err == nil {
			return strconv.Itoa(n)
		}
	}
	return v
}
