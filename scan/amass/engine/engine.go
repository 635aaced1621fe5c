// Package engine runs one OWASP Amass enumeration through the amass v4
// library; scan/amass describes it (Config, Record) and documents what it
// does and does not contact.
//
// Only cmd/starpipe-scanner may import this package: it links amass (and,
// with nuclei in the same binary, libraries that write files at package
// initialisation), which the daemon's process must not.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/caffix/netmap"
	"github.com/caffix/service"
	"github.com/owasp-amass/amass/v4/datasrcs/scripting"
	"github.com/owasp-amass/amass/v4/enum"
	"github.com/owasp-amass/amass/v4/resources"
	"github.com/owasp-amass/config/config"
	oam "github.com/owasp-amass/open-asset-model"
	"github.com/owasp-amass/open-asset-model/domain"

	"github.com/glebarez/sqlite"
	assetdb "github.com/owasp-amass/asset-db"
	sqlitemigrations "github.com/owasp-amass/asset-db/migrations/sqlite3"
	"github.com/owasp-amass/asset-db/repository"
	migrate "github.com/rubenv/sql-migrate"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"

	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/scan/amass"
)

// resolverAddr is the address of a resolver given as ip or ip:port.
func resolverAddr(r string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(r); err == nil {
		return ap.Addr(), nil
	}
	if a, err := netip.ParseAddr(r); err == nil {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("amass resolver %q is not an ip or ip:port", r)
}

// Run enumerates cfg.Domains and writes one JSON line per name found, in
// name order, to out. The lines are written after the enumeration ends.
//
// amass connects to nothing but its resolvers (DNS over UDP, and TCP for
// truncated answers), which it reaches with sockets of its own that no
// dialer hook reaches: every resolver must be allowed by np, checked here
// before the pool is built. Active enumeration (zone transfers and walks
// against the name servers of each domain, wherever they resolve) is
// refused, because those connections could not be checked.
func Run(ctx context.Context, cfg amass.Config, np *netpolicy.Policy, out io.Writer) (st amass.Stats, err error) {
	cfg, err = cfg.Check()
	if err != nil {
		return st, err
	}
	if cfg.Active {
		return st, errors.New("amass active enumeration is not supported: it connects to name servers the scan network policy cannot check")
	}
	for _, r := range cfg.Resolvers {
		a, perr := resolverAddr(r)
		if perr != nil {
			return st, perr
		}
		if err := np.CheckAddr(a); err != nil {
			return st, fmt.Errorf("amass resolver %s: %w", r, err)
		}
	}
	domains, resolvers := cfg.Domains, cfg.Resolvers
	qps := cfg.QPS
	if qps <= 0 {
		qps = amass.DefaultQPS
	}

	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = os.TempDir()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return st, fmt.Errorf("creating amass state directory: %w", err)
	}
	runDir, err := os.MkdirTemp(stateDir, "run-")
	if err != nil {
		return st, fmt.Errorf("creating amass run directory: %w", err)
	}
	defer os.RemoveAll(runDir)

	ac := config.NewConfig()
	ac.Log = log.New(io.Discard, "", 0)
	ac.Dir = runDir
	// A zero start time: the graph is new for this run, and the library's
	// default (now, at one-second SQLite resolution) drops names stored in
	// the run's first second.
	ac.CollectionStartTime = time.Time{}
	ac.AddDomains(domains...)
	ac.Resolvers = resolvers
	ac.TrustedResolvers = resolvers
	ac.ResolversQPS = qps
	ac.TrustedQPS = qps
	ac.MaxDNSQueries = qps * len(resolvers)
	ac.Wordlist = slices.Clone(cfg.Wordlist)
	ac.BruteForcing = len(cfg.Wordlist) > 0
	ac.Recursive = cfg.Recursive
	ac.MinForRecursive = 0
	ac.Alterations = cfg.Alterations
	ac.Active = cfg.Active
	ac.Passive = false
	var sources []string
	if ac.BruteForcing {
		sources = append(sources, amass.SourceBrute)
	}
	if cfg.Alterations {
		sources = append(sources, amass.SourceAlterations)
	}
	if cfg.Active {
		sources = append(sources, amass.SourceActiveDNS)
	}
	ac.SourceFilter.Include = true
	ac.SourceFilter.Sources = sources

	graph, closeGraph, err := newGraph(filepath.Join(runDir, "amass.sqlite"))
	if err != nil {
		return st, err
	}
	defer func() {
		// Before the run directory goes (deferred earlier, so run later).
		if cerr := closeGraph(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	sys, err := newSystem(ac, resolvers, qps, graph)
	if err != nil {
		return st, fmt.Errorf("building amass resolver pool: %w", err)
	}
	defer sys.Shutdown()
	srcs, err := loadSources(sys, sources)
	if err != nil {
		return st, err
	}
	if err := sys.SetDataSources(srcs); err != nil {
		return st, fmt.Errorf("starting amass data sources: %w", err)
	}

	runCtx := ctx
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	enumErr := enum.NewEnumeration(ac, sys, graph).Start(runCtx)
	if enumErr == nil {
		enumErr = runCtx.Err()
	}

	// Collect whatever is in the graph, also after a timeout or
	// cancellation: a partial result is still evidence of what was seen.
	recs, err := collect(context.WithoutCancel(ctx), ac, sys, graph, sources)
	if err != nil {
		return st, err
	}
	enc := json.NewEncoder(out)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return st, fmt.Errorf("writing amass result: %w", err)
		}
		st.Names++
		st.Addresses += len(r.Addresses)
	}
	if enumErr != nil {
		return st, fmt.Errorf("running amass enumeration: %w", enumErr)
	}
	return st, nil
}

// newGraph opens the run's graph database and returns it with a function
// that closes it. netmap.NewGraph is not used: it opens two database
// handles (one for its migrations, one inside the asset store) and keeps
// neither where it could be closed, so every run leaked both. Here the
// migrations run on a handle that is closed at once, and closeAssetDB
// reaches the store's handle. netmap and asset-db panic when the database
// cannot be opened or migrated (an unwritable directory, say): that
// becomes an error.
func newGraph(path string) (g *netmap.Graph, closeGraph func() error, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("opening amass graph %s: %v", path, r)
		}
	}()
	if err := migrateGraph(path); err != nil {
		return nil, nil, err
	}
	store := assetdb.New(repository.SQLite, path)
	if store == nil {
		return nil, nil, fmt.Errorf("opening amass graph %s", path)
	}
	// Only DB is used by the enumeration and by collect; the unexported
	// fields serve netmap's Remove, which is not called (the run directory
	// is removed whole).
	return &netmap.Graph{DB: store}, func() error { return closeAssetDB(store) }, nil
}

// migrateGraph creates the graph's tables, as netmap.NewGraph does, on a
// handle of its own that it closes.
func migrateGraph(path string) error {
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: gormlogger.Default.LogMode(gormlogger.Silent)})
	if err != nil {
		return fmt.Errorf("opening amass graph %s: %w", path, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("opening amass graph %s: %w", path, err)
	}
	defer sqlDB.Close()
	src := migrate.EmbedFileSystemMigrationSource{FileSystem: sqlitemigrations.Migrations(), Root: "/"}
	if _, err := migrate.Exec(sqlDB, "sqlite3", src, migrate.Up); err != nil {
		return fmt.Errorf("creating amass graph tables in %s: %w", path, err)
	}
	return sqlDB.Close()
}

// errStoreLayout means asset-db's store no longer has the shape
// closeAssetDB expects (a new version of the library).
var errStoreLayout = errors.New("amass asset store: unexpected layout, database handle not closed")

// closeAssetDB closes the database handle inside an asset store. asset-db
// v0.3.3 offers no Close: the handle is the unexported db field (a
// *gorm.DB) of the unexported repository behind AssetDB.repository, read
// here through reflection. Any other shape is reported, not guessed at.
func closeAssetDB(a *assetdb.AssetDB) error {
	repo := reflect.ValueOf(a).Elem().FieldByName("repository")
	if !repo.IsValid() || repo.Kind() != reflect.Interface || repo.IsNil() {
		return errStoreLayout
	}
	impl := repo.Elem()
	if impl.Kind() != reflect.Pointer || impl.IsNil() || impl.Elem().Kind() != reflect.Struct {
		return errStoreLayout
	}
	f := impl.Elem().FieldByName("db")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*gorm.DB]() {
		return errStoreLayout
	}
	db := *(**gorm.DB)(unsafe.Pointer(f.UnsafeAddr()))
	if db == nil {
		return errStoreLayout
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("closing amass graph: %w", err)
	}
	if err := sqlDB.Close(); err != nil {
		return fmt.Errorf("closing amass graph: %w", err)
	}
	return nil
}

// loadSources creates the named amass scripts from the library's embedded
// resources.
func loadSources(sys *system, names []string) ([]service.Service, error) {
	scripts, err := resources.GetDefaultScripts()
	if err != nil {
		return nil, fmt.Errorf("reading amass scripts: %w", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var srcs []service.Service
	for _, script := range scripts {
		name, ok := scriptName(script)
		if !ok || !want[name] {
			continue
		}
		s := scripting.NewScript(script, sys)
		if s == nil {
			return nil, fmt.Errorf("loading amass script %q", name)
		}
		srcs = append(srcs, s)
		delete(want, name)
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("amass scripts not found: %v", slices.Sorted(mapKeys(want)))
	}
	return srcs, nil
}

// scriptName reads the `name = "..."` line of an amass script without
// starting a Lua interpreter for every one of the ~90 embedded scripts.
func scriptName(script string) (string, bool) {
	for line := range strings.Lines(script) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "name" {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// collect reads every in-scope name and its addresses from the graph.
func collect(ctx context.Context, ac *config.Config, sys *system, g *netmap.Graph, sources []string) ([]amass.Record, error) {
	assets, err := g.DB.FindByType(oam.FQDN, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("reading amass names: %w", err)
	}
	byName := map[string]*amass.Record{}
	var names []string
	for _, a := range assets {
		fqdn, ok := a.Asset.(*domain.FQDN)
		if !ok {
			if v, ok2 := a.Asset.(domain.FQDN); ok2 {
				fqdn, ok = &v, true
			}
		}
		if !ok {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(fqdn.Name, "."))
		d := ac.WhichDomain(name)
		if d == "" || byName[name] != nil {
			continue
		}
		byName[name] = &amass.Record{
			Name:      name,
			Domain:    d,
			Addresses: []amass.Address{},
			Tag:       "dns",
			Sources:   slices.Clone(sources),
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pairs, err := g.NamesToAddrs(ctx, time.Time{}, names...)
	if err != nil && len(pairs) > 0 {
		return nil, fmt.Errorf("reading amass addresses: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range pairs {
		if p == nil || p.FQDN == nil || p.Addr == nil {
			continue
		}
		r := byName[strings.ToLower(p.FQDN.Name)]
		ip := p.Addr.Address.String()
		if r == nil || seen[r.Name+" "+ip] {
			continue
		}
		seen[r.Name+" "+ip] = true
		addr := amass.Address{IP: ip}
		// The catch-all entry only exists to keep amass from waiting for
		// ASN data; it says nothing about the address.
		if info := sys.Cache().AddrSearch(ip); info != nil && info.ASN != catchAllASN {
			addr.CIDR, addr.ASN, addr.Desc = info.Prefix, info.ASN, info.Description
		}
		r.Addresses = append(r.Addresses, addr)
	}
	slices.Sort(names)
	recs := make([]amass.Record, 0, len(names))
	for _, n := range names {
		r := byName[n]
		slices.SortFunc(r.Addresses, func(a, b amass.Address) int { return strings.Compare(a.IP, b.IP) })
		recs = append(recs, *r)
	}
	return recs, nil
}
