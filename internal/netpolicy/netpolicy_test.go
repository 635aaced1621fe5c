package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	loopback := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	only := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, DenyPublic: true})
	tests := []struct {
		addr string
		p    *Policy
		ok   bool
	}{
		{"93.184.215.14", nil, true},
		{"2606:4700::1111", nil, true},
		{"169.254.169.254", nil, false},
		{"fd00:ec2::254", nil, false},
		{"127.0.0.1", nil, false},
		{"::1", nil, false},
		{"::ffff:127.0.0.1", nil, false},
		{"::ffff:169.254.169.254", nil, false},
		{"10.1.2.3", nil, false},
		{"172.31.255.255", nil, false},
		{"192.168.1.1", nil, false},
		{"100.100.100.200", nil, false}, // CGNAT; also Alibaba's metadata address
		{"0.0.0.0", nil, false},
		{"::", nil, false},
		{"fe80::1%eth0", nil, false},
		{"224.0.0.251", nil, false},
		{"ff02::1", nil, false},
		{"255.255.255.255", nil, false},
		{"64:ff9b::a9fe:a9fe", nil, false}, // NAT64 form of 169.254.169.254
		{"64:ff9b::5db8:d70e", nil, true},  // NAT64 form of a public address
		{"2002:7f00:1::1", nil, false},     // 6to4 of 127.0.0.1
		{"127.0.0.1", loopback, true},
		{"127.1.2.3", loopback, true},
		{"169.254.169.254", loopback, false},
		{"::1", loopback, false},
		{"10.20.1.1", only, true},
		{"10.21.1.1", only, false},
		{"93.184.215.14", only, false},
	}
	for _, tt := range tests {
		err := tt.p.CheckAddr(netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("CheckAddr(%s) = %v, want allowed=%v", tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("CheckAddr(%s): %v is not ErrDenied", tt.addr, err)
		}
	}
}

func TestDeniedErrorNamesTheRange(t *testing.T) {
	err := New(Options{}).CheckAddr(netip.MustParseAddr("169.254.169.254"))
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason == "" {
		t.Fatalf("err = %#v", err)
	}
	if got := err.Error(); got != "169.254.169.254 is link-local (cloud metadata lives here) and not in scan.allow_networks" {
		t.Errorf("message = %q", got)
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return a, nil
}

func TestCheckHost(t *testing.T) {
	r := fakeResolver{
		"public.example":  {netip.MustParseAddr("93.184.215.14")},
		"rebind.example":  {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("169.254.169.254")},
		"private.example": {netip.MustParseAddr("10.0.0.5")},
	}
	p := New(Options{})
	tests := []struct {
		host string
		ok   bool
	}{
		{"public.example", true},
		{"rebind.example", false}, // one bad address refuses the name
		{"private.example", false},
		{"169.254.169.254", false},
		{"[::1]", false},
		{"93.184.215.14", true},
		{"missing.example", false},
	}
	for _, tt := range tests {
		err := p.CheckHost(context.Background(), r, tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("CheckHost(%s) = %v, want allowed=%v", tt.host, err, tt.ok)
		}
	}
	err := p.CheckHost(context.Background(), r, "rebind.example")
	if got, want := err.Error(), "rebind.example resolves to 169.254.169.254, which is link-local (cloud metadata lives here) and not in scan.allow_networks"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

// TestDialerRefusesAtConnect dials a real loopback listener: the default
// policy refuses it before any packet leaves, the demo policy lets it
// through.
func TestDialerRefusesAtConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx := context.Background()
	d := New(Options{}).Dialer(nil)
	if c, err := d.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("default policy dialled loopback")
	} else if !errors.Is(err, ErrDenied) {
		t.Fatalf("dial error %v is not ErrDenied", err)
	}
	// A name goes through the same check after resolution.
	if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("localhost", portOf(t, ln))); err == nil {
		c.Close()
		t.Fatal("default policy dialled localhost")
	}
	ok := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}).Dialer(nil)
	c, err := ok.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("loopback policy: %v", err)
	}
	c.Close()
}

func portOf(t *testing.T, ln net.Listener) string {
	t.Helper()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestControlRefusesOtherNetworks(t *testing.T) {
	if err := New(Options{}).Control("unix", "/run/x.sock", nil); err == nil {
		t.Fatal("unix socket allowed")
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("fd00::/8")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.1/8", "example.com", "", "fe80::1%eth0"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}

// TestDeniedPrefixes checks the deny list against CheckAddr: an address
// is in the list exactly when the policy refuses it.
func TestDeniedPrefixes(t *testing.T) {
	p := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}})
	deny := p.DeniedPrefixes()
	in := func(a netip.Addr) bool {
		return slices.ContainsFunc(deny, func(pr netip.Prefix) bool { return pr.Contains(a) })
	}
	for _, s := range []string{"127.0.0.1", "127.0.0.2", "127.255.255.255", "10.1.1.1", "169.254.169.254", "8.8.8.8", "::1", "fd00:ec2::254"} {
		a := netip.MustParseAddr(s)
		if denied := p.CheckAddr(a) != nil; denied != in(a) {
			t.Errorf("%s: CheckAddr denied=%v, in DeniedPrefixes=%v", s, denied, in(a))
		}
	}
}
