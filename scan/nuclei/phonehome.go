package nuclei

import (
	"errors"
	"net/http"
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

// attempts returns the hosts refused so far.
func (t *refusingTransport) attempts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.refused...)
}

var (
	phoneHome     = &refusingTransport{}
	phoneHomeOnce sync.Once
)

// blockPhoneHome cuts nuclei's update client off the network. The first
// engine of a process calls a version-check endpoint on the internet (with a
// machine id) even when DisableUpdateCheck is set; that client, and the
// template-update client, are built on updateutils.DefaultHttpClient, so
// replacing its transport before the first engine stops them all.
func blockPhoneHome() {
	phoneHomeOnce.Do(func() {
		updateutils.DefaultHttpClient.Transport = phoneHome
	})
}
