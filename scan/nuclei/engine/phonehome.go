package engine

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	updateutils "github.com/projectdiscovery/utils/update"
)

// errRefused is what every request of nuclei's update client gets.
var errRefused = errors.New("starpipe: outbound request refused")

// refusingTransport answers every request with an error and never opens a
// connection. It records the hosts it refused, for the tests.
type refusingTransport struct {
	mu      sync.Mutex
	refused []string
}

func (t *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	t.mu.Lock()
	t.refused = append(t.refused, req.URL.Host)
	t.mu.Unlock()
	return nil, errRefused
}

// RefusedRequests returns the hosts that nuclei's update client tried to
// reach in this process, all of them refused; cmd/starpipe-scanner reports
// them so that tests can see the refusal from outside the process.
func RefusedRequests() []string { return phoneHome.attempts() }

// attempts returns the hosts refused so far.
func (t *refusingTransport) attempts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.refused...)
}

var (
	phoneHome     = &refusingTransport{}
	isolateOnce   sync.Once
	isolateErr    error
	resolvConfEnv = "RESOLVERS_PATH"
)

// isolate runs once per process, before the first engine.
//
// It cuts nuclei's update client off the network: the first engine of a
// process calls a version-check endpoint on the internet (with a machine
// id) even when DisableUpdateCheck is set; that client, and the
// template-update client, are built on updateutils.DefaultHttpClient, so
// replacing its transport stops them all.
//
// It also points fastdialer's resolv.conf (RESOLVERS_PATH, read whenever an
// engine builds its dialer) at an empty file. fastdialer otherwise puts the
// system's name servers in front of the configured ones, so a scan told to
// resolve through its own resolver still sent queries for the target to
// the system resolver (seen in a system-call trace). Run passes the
// system's name servers explicitly when none are configured.
func isolate() error {
	isolateOnce.Do(func() {
		updateutils.DefaultHttpClient.Transport = phoneHome
		empty := filepath.Join(os.TempDir(), "resolv.conf.empty")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			isolateErr = fmt.Errorf("writing empty resolver file: %w", err)
			return
		}
		isolateErr = os.Setenv(resolvConfEnv, empty)
	})
	return isolateErr
}

// systemResolvers returns the name servers of /etc/resolv.conf as ip:port.
func systemResolvers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			ip := strings.SplitN(fields[1], "%", 2)[0] // drop an IPv6 zone
			if net.ParseIP(ip) != nil {
				out = append(out, net.JoinHostPort(ip, "53"))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	return out, nil
}
