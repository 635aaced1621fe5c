package vault

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Scope says where a credential may be sent: the URL prefixes of its
// targets, and whether plain http is acceptable. It is what an admin or
// operator states when storing the credential, and it travels with the
// credential to every check: schedule save (a schedule aiming it
// elsewhere is refused), the scanner (each request's target), and
// redirects (which never carry it off its targets).
type Scope struct {
	// Targets are absolute http(s) URL prefixes: scheme, host and port
	// must match exactly (default ports normalised), the path is a prefix
	// on a segment boundary ("https://h/app" covers /app and /app/x, not
	// /application).
	Targets []string `json:"targets"`
	// AllowHTTP lets the credential travel over plain http. Without it
	// http targets are refused: the secret would cross the network in
	// clear.
	AllowHTTP bool `json:"allow_http,omitempty"`
}

// ErrNoTargets marks a credential stored before targets existed (or
// without them): it can no longer be sent anywhere until its targets are
// set.
var ErrNoTargets = errors.New("credential has no targets")

// maxTargets bounds a scope; more prefixes than this is a list of hosts,
// not a boundary.
const maxTargets = 64

// Validate checks every target prefix and returns a *CredentialError
// naming the field "targets" (or "allow_http"). name labels the error.
func (s Scope) Validate(name string) error {
	bad := func(field, format string, args ...any) error {
		return &CredentialError{Name: name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(s.Targets) == 0 {
		return bad("targets", "required: the URL prefixes this credential may be sent to, e.g. https://app.example.com/")
	}
	if len(s.Targets) > maxTargets {
		return bad("targets", "more than %d prefixes", maxTargets)
	}
	for i, t := range s.Targets {
		p, err := parsePrefix(t)
		if err != nil {
			return bad(fmt.Sprintf("targets[%d]", i), "%v", err)
		}
		if p.scheme == "http" && !s.AllowHTTP {
			return bad(fmt.Sprintf("targets[%d]", i), "%s is plain http; set allow_http: true to send this credential in clear", p)
		}
	}
	return nil
}

// Permits reports whether the credential may be sent to target (an
// http(s) URL, or host:port meaning http://host:port). The error says
// why not, naming the target but never the secret.
func (s Scope) Permits(target string) error {
	if len(s.Targets) == 0 {
		return ErrNoTargets
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	t, err := parsePrefix(target)
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	if t.scheme == "http" && !s.AllowHTTP {
		return fmt.Errorf("%s is plain http and the credential does not set allow_http", t)
	}
	for _, raw := range s.Targets {
		p, err := parsePrefix(raw)
		if err != nil {
			continue // refused when stored; a row altered since grants nothing
		}
		if p.covers(t) {
			return nil
		}
	}
	return fmt.Errorf("%s is not under the credential's targets (%s)", t, strings.Join(s.Targets, ", "))
}

// urlPrefix is a parsed target or prefix in the form comparisons use.
type urlPrefix struct {
	scheme, host, port, path string
}

func (p urlPrefix) String() string {
	hp := p.host
	if strings.Contains(hp, ":") {
		hp = "[" + hp + "]"
	}
	if !(p.scheme == "http" && p.port == "80" || p.scheme == "https" && p.port == "443") {
		hp += ":" + p.port
	}
	return p.scheme + "://" + hp + p.path
}

func parsePrefix(raw string) (urlPrefix, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return urlPrefix{}, errors.New("not a valid URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return urlPrefix{}, fmt.Errorf("want an http or https URL, not %q", raw)
	}
	if u.User != nil {
		return urlPrefix{}, errors.New("user info in the URL is not allowed")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return urlPrefix{}, errors.New("a prefix has no query or fragment")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return urlPrefix{}, errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	if _, err := net.LookupPort("tcp", port); err != nil || strings.TrimLeft(port, "0123456789") != "" {
		return urlPrefix{}, fmt.Errorf("port %q is not a number", port)
	}
	// Dot segments are resolved first, so that /app/../admin is /admin.
	p := u.Path
	if p == "" {
		p = "/"
	}
	trailing := strings.HasSuffix(p, "/")
	p = path.Clean(p)
	if trailing && p != "/" {
		p += "/"
	}
	return urlPrefix{scheme: scheme, host: host, port: port, path: p}, nil
}

// sameOrigin reports whether a and b share scheme, host and port.
func (p urlPrefix) sameOrigin(t urlPrefix) bool {
	return p.scheme == t.scheme && p.host == t.host && p.port == t.port
}

// covers reports whether target t is under prefix p: same origin, and
// t's path equal to p's or below it on a segment boundary.
func (p urlPrefix) covers(t urlPrefix) bool {
	if !p.sameOrigin(t) {
		return false
	}
	if strings.HasSuffix(p.path, "/") {
		return strings.HasPrefix(t.path, p.path) || t.path+"/" == p.path
	}
	return t.path == p.path || strings.HasPrefix(t.path, p.path+"/")
}

// HeaderNames are the request headers that carry c (for stripping them).
func (c Credential) HeaderNames() []string {
	switch c.Kind {
	case KindBearer, KindBasic:
		return []string{"Authorization"}
	case KindHeader:
		return []string{c.HeaderName}
	case KindCookie:
		return []string{"Cookie"}
	}
	return nil
}

// CheckRedirect returns an http.Client CheckRedirect function for requests
// that carry c: a redirect to another origin than the request before it,
// or to a URL outside c's targets, loses c's headers (and Authorization,
// Cookie and Proxy-Authorization whatever c's kind). next then decides
// whether to follow (nil: Go's default of at most 10 redirects).
//
// net/http copies the first request's headers onto each redirect before
// calling CheckRedirect, and forwards custom headers (an API key header)
// to any host; this is where they are removed.
func (c Credential) CheckRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	names := append(c.HeaderNames(), "Authorization", "Cookie", "Proxy-Authorization")
	scope := c.Scope()
	return func(req *http.Request, via []*http.Request) error {
		strip := scope.Permits(req.URL.String()) != nil
		if len(via) > 0 && !strip {
			prev, err1 := parsePrefix(via[len(via)-1].URL.String())
			cur, err2 := parsePrefix(req.URL.String())
			strip = err1 != nil || err2 != nil || !prev.sameOrigin(cur)
		}
		if strip {
			for _, h := range names {
				req.Header.Del(h)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// Scope returns where c may be sent.
func (c Credential) Scope() Scope { return Scope{Targets: c.Targets, AllowHTTP: c.AllowHTTP} }
