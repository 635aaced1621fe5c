package engine

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/caffix/netmap"
	"github.com/caffix/service"
	"github.com/owasp-amass/amass/v4/requests"
	"github.com/owasp-amass/amass/v4/systems"
	"github.com/owasp-amass/config/config"
	"github.com/owasp-amass/resolve"
)

// system is a systems.System limited to what the run was given: the
// configured resolvers, the run's own graph and the data sources Run
// adds. amass's own LocalSystem is not used: it adds 8.8.8.8 as the
// wildcard-detection resolver and public resolvers to the pools, loads a
// 280 MB ASN table and leaves goroutines running after Shutdown.
type system struct {
	cfg   *config.Config
	pool  *resolve.Resolvers
	graph *netmap.Graph
	cache *requests.ASNCache

	mu      sync.Mutex
	sources []service.Service
	stopped bool
}

var _ systems.System = (*system)(nil)

// catchAllASN covers every address, so that the store stage never waits
// (up to 60 s per address) for ASN data sources that this system does not
// have. Reported as ASN 0 with an empty description and netblock.
const catchAllASN = 0

func newSystem(cfg *config.Config, resolvers []string, qps int, graph *netmap.Graph) (*system, error) {
	pool := resolve.NewResolvers()
	pool.SetLogger(cfg.Log)
	if err := pool.AddResolvers(qps, resolvers...); err != nil {
		pool.Stop()
		return nil, err
	}
	if pool.Len() == 0 {
		pool.Stop()
		return nil, errors.New("no usable resolvers")
	}
	pool.SetTimeout(2 * time.Second)
	// Wildcard detection asks the first configured resolver, never a
	// public one.
	pool.SetDetectionResolver(qps, resolvers[0])

	cache := requests.NewASNCache()
	for _, prefix := range []string{"0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"} {
		ip, _, _ := net.ParseCIDR(prefix)
		cache.Update(&requests.ASNRequest{
			Address:     ip.String(),
			ASN:         catchAllASN,
			Prefix:      prefix,
			Description: "",
		})
	}
	return &system{cfg: cfg, pool: pool, graph: graph, cache: cache}, nil
}

func (s *system) Config() *config.Config { return s.cfg }

func (s *system) Resolvers() *resolve.Resolvers { return s.pool }

// TrustedResolvers returns the same pool: the configured resolvers are the
// only ones the run may ask.
func (s *system) TrustedResolvers() *resolve.Resolvers { return s.pool }

func (s *system) Cache() *requests.ASNCache { return s.cache }

func (s *system) AddSource(src service.Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sources = append(s.sources, src)
	return nil
}

func (s *system) AddAndStart(src service.Service) error {
	if err := src.Start(); err != nil {
		return err
	}
	return s.AddSource(src)
}

func (s *system) DataSources() []service.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]service.Service(nil), s.sources...)
}

func (s *system) SetDataSources(sources []service.Service) error {
	var errs []error
	for _, src := range sources {
		if err := s.AddAndStart(src); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *system) GraphDatabases() []*netmap.Graph { return []*netmap.Graph{s.graph} }

func (s *system) GetMemoryUsage() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Alloc
}

// Shutdown stops the data sources and the resolver pool. It is idempotent.
func (s *system) Shutdown() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	srcs := s.sources
	s.sources = nil
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = src.Stop()
		}()
	}
	wg.Wait()
	s.pool.Stop()
	return nil
}
