// Package api is starpipe's HTTP interface: health and readiness probes,
// Prometheus metrics, and the authenticated /v1 routes for uploads, findings
// review, schedules, credentials and reports. Every /v1 route needs a bearer
// token and a role allowed for it.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/vault"
)

// Roles a token can hold. Admin can do everything; the others are scoped to
// what each kind of user does.
const (
	RoleAdmin    = "admin"    // everything, including tokens and credentials
	RoleOperator = "operator" // security operations: schedules, runs, uploads
	RoleOwner    = "owner"    // CCM domain owners: review findings
	RoleAuditor  = "auditor"  // read-only: findings, runs, reports
	RoleIngest   = "ingest"   // CI pipelines: upload runs and read their status
)

// Principal is the authenticated caller.
type Principal struct {
	ID string
	// Name is who acts, as every change records it: the user's name for a
	// token that belongs to a user, else the token's (service's) name.
	Name string
	Role string
	// Scopes and Kinds limit what the caller may upload and which held
	// runs it may decide: scope patterns (finding.MatchScope) and scan
	// kinds. Empty means no limit.
	Scopes []string
	Kinds  []string
	// User is the user the token acts as, "" for a named service's token.
	User string
}

// ErrUnauthenticated is returned by an Authenticator for an unknown, revoked
// or malformed token.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator resolves a bearer token to its principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// Options wire the server to its dependencies. Route groups whose
// dependency is nil are not registered.
type Options struct {
	Logger   *slog.Logger
	Auth     Authenticator
	Registry *prometheus.Registry
	// Ready reports whether the database and broker are reachable.
	Ready func(ctx context.Context) error

	Store    Store             // runs, findings, controls, schedules, credentials (*store.Store)
	Catalogs *mapping.Catalogs // control titles for /v1/controls
	Keyring  *vault.Keyring    // encrypts credentials posted to /v1/credentials
	Intake   Intake            // accepts uploads for POST /v1/runs
	HeldRuns HeldRuns          // releases and discards held runs
	// Enrich scores and maps a manual finding (POST /v1/findings) by the
	// pipeline's rules (the daemon's NewEnricher); nil scores it only.
	Enrich review.Enricher

	// SchedulePolicy is the admin configuration schedules are checked
	// against on POST and PUT (analysers, word list directory, scan
	// networks, a resolver for target names). Its zero value is the
	// strictest; the store is the credential look-up when it has none.
	SchedulePolicy spec.Options

	// Exceptions is the exceptions register's configuration (four eyes,
	// longest expiry); nil is review.DefaultExceptionPolicy.
	Exceptions *review.ExceptionPolicy
}

// routeGroups are registered by New; each feature file adds its own in init
// so that features stay in their own files.
var routeGroups []func(*Server)

// Server is the HTTP handler.
type Server struct {
	opt     Options
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *httpMetrics
	routes  []string // every authenticated pattern, for the OpenAPI check
}

// New builds the handler. Register further /v1 routes with Handle.
func New(opt Options) *Server {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	s := &Server{opt: opt, log: opt.Logger.With("component", "api"), mux: http.NewServeMux()}
	s.metrics = newHTTPMetrics(opt.Registry)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{Registry: opt.Registry}))
	for _, g := range routeGroups {
		g(s)
	}
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.authenticate(w, r); !ok {
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path)
	})
	return s
}

// Handle registers an authenticated route (a ServeMux pattern such as
// "GET /v1/runs/{id}") that callers with one of roles may use. Admin is
// always allowed.
func (s *Server) Handle(pattern string, h http.HandlerFunc, roles ...string) {
	s.routes = append(s.routes, pattern)
	allowed := map[string]bool{RoleAdmin: true}
	for _, r := range roles {
		allowed[r] = true
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !allowed[p.Role] {
			writeError(w, http.StatusForbidden, "forbidden", "role "+p.Role+" may not "+r.Method+" "+r.URL.Path)
			return
		}
		h(w, r.WithContext(withPrincipal(r.Context(), p)))
	})
}

// ServeHTTP records metrics and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = "unmatched"
	}
	s.mux.ServeHTTP(rec, r)
	s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(rec.status)).Inc()
	s.metrics.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
}

// readyz answers 200 or 503. What is not ready (a database or broker
// error, which names hosts and ports) is told only to a caller with a
// valid token; load balancers and anyone else get the status and a
// generic body. The token is checked only when not ready, so probes cost
// no token look-up.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opt.Ready == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	err := s.opt.Ready(ctx)
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	if s.validToken(ctx, r) {
		writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
}

// validToken reports whether r carries a live token, answering nothing:
// for routes that tell more to an authenticated caller.
func (s *Server) validToken(ctx context.Context, r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" || s.opt.Auth == nil {
		return false
	}
	_, err := s.opt.Auth.Authenticate(ctx, strings.TrimSpace(token))
	return err == nil
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starpipe"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token (Authorization: Bearer <token>)")
		return Principal{}, false
	}
	if s.opt.Auth == nil {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no authenticator configured")
		return Principal{}, false
	}
	p, err := s.opt.Auth.Authenticate(r.Context(), strings.TrimSpace(token))
	if errors.Is(err, ErrUnauthenticated) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starpipe", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "invalid or revoked token")
		return Principal{}, false
	}
	if err != nil {
		s.log.Error("authenticate", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "cannot check the token now")
		return Principal{}, false
	}
	return p, true
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller of an authenticated request.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starpipe_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "starpipe_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}
