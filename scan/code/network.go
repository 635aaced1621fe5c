package code

import (
	"net"
	"net/http"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/starpipe/starpipe/internal/netpolicy"
)

// UseNetwork makes every http(s) clone of this process connect through
// np: each address the repository's host (or a host it redirects to)
// resolves to is checked when the connection is made. It replaces
// go-git's process-wide http and https transports, so it is for a process
// that runs one scan (the scanner process calls it before Run).
//
// Credentials: go-git's transport strips its authentication from any
// redirect that leaves the repository's origin (scheme, host and port),
// and follows redirects only for the initial request, as git does.
func UseNetwork(np *netpolicy.Policy) {
	d := np.Dialer(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	tr := &http.Transport{
		// No proxy: a proxy would make the policy check the proxy's
		// address instead of the repository's.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	c := githttp.NewClientWithOptions(&http.Client{Transport: tr}, &githttp.ClientOptions{CacheMaxEntries: 16})
	client.InstallProtocol("http", c)
	client.InstallProtocol("https", c)
}
