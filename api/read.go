package api

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/mapping"
	"github.com/starpipe/starpipe/store"
)

// The read API: runs, findings and per-control counts. Every route reads
// the store; findings export as CSV on Accept: text/csv.

func init() { routeGroups = append(routeGroups, (*Server).registerRead) }

func (s *Server) registerRead() {
	if s.opt.Store == nil {
		return
	}
	readers := []string{RoleOperator, RoleOwner, RoleAuditor}
	s.Handle("GET /v1/runs", s.listRuns, readers...)
	// CI pipelines poll the run they uploaded.
	s.Handle("GET /v1/runs/{id}", s.getRun, append(readers, RoleIngest)...)
	s.Handle("GET /v1/findings", s.listFindings, readers...)
	s.Handle("GET /v1/findings/{id}", s.getFinding, readers...)
	s.Handle("GET /v1/controls", s.listControls, readers...)
}

// page is the JSON shape of a list: next is null on the last page.
type listPage[T any] struct {
	Items []T     `json:"items"`
	Next  *string `json:"next"`
}

func newListPage[T any](items []T, next string) listPage[T] {
	if items == nil {
		items = []T{}
	}
	p := listPage[T]{Items: items}
	if next != "" {
		p.Next = &next
	}
	return p
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "scope", "status", "schedule", "limit", "cursor")
	if err != nil {
		writeParamError(w, err)
		return
	}
	f := store.RunFilter{Scope: q.one("scope"), ScheduleID: q.one("schedule"), Cursor: q.one("cursor")}
	if f.Status = q.one("status"); f.Status != "" {
		if _, err := finding.ParseRunStatus(f.Status); err != nil {
			writeParamError(w, &queryParamError{err.Error()})
			return
		}
	}
	if f.Limit, err = q.limit(); err != nil {
		writeParamError(w, err)
		return
	}
	runs, next, err := s.opt.Store.ListRuns(r.Context(), f)
	if err != nil {
		s.readFailed(w, r, err, "runs")
		return
	}
	items := make([]Run, len(runs))
	for i, run := range runs {
		items[i] = RunOf(run)
	}
	writeJSON(w, http.StatusOK, newListPage(items, next))
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, err := s.opt.Store.GetRun(r.Context(), id)
	if err != nil {
		s.readFailed(w, r, err, "run "+id)
		return
	}
	writeJSON(w, http.StatusOK, RunOf(run))
}

func (s *Server) getFinding(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		// Not an id any finding can have: as unknown as a missing one.
		writeError(w, http.StatusNotFound, "not_found", "finding "+raw+" not found")
		return
	}
	d, err := s.opt.Store.GetFinding(r.Context(), id)
	if err != nil {
		s.readFailed(w, r, err, "finding "+raw)
		return
	}
	writeJSON(w, http.StatusOK, FindingDetailOf(d))
}

func (s *Server) listFindings(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "scope", "status", "severity", "control", "version", "kind", "tool", "limit", "cursor",
		"review", "owner", "sort")
	if err != nil {
		writeParamError(w, err)
		return
	}
	f, err := s.findingFilter(q)
	if err == nil {
		err = reviewListFilter(r, q, &f)
	}
	if err != nil {
		writeParamError(w, err)
		return
	}
	if wantsCSV(r.Header.Get("Accept")) {
		s.exportFindingsCSV(w, r, f)
		return
	}
	rows, next, err := s.opt.Store.ListFindings(r.Context(), f)
	if err != nil {
		s.readFailed(w, r, err, "findings")
		return
	}
	items := make([]Finding, len(rows))
	for i, row := range rows {
		items[i] = FindingOf(row)
	}
	writeJSON(w, http.StatusOK, newListPage(items, next))
}

// findingFilter validates the findings query so that a bad value is a 400
// naming its parameter rather than an empty list.
func (s *Server) findingFilter(q queryParams) (store.FindingFilter, error) {
	f := store.FindingFilter{Scope: q.one("scope"), Tool: q.one("tool"), Cursor: q.one("cursor")}
	var err error
	if f.Limit, err = q.limit(); err != nil {
		return f, err
	}
	for _, v := range q.list("status") {
		st, err := finding.ParseStatus(v)
		if err != nil {
			return f, &queryParamError{err.Error()}
		}
		f.Status = appendIfMissing(f.Status, string(st))
	}
	for _, v := range q.list("severity") {
		sev, ok := finding.ParseSeverity(v)
		if !ok {
			return f, &queryParamError{fmt.Sprintf("invalid severity %q (allowed: info, low, medium, high, critical)", v)}
		}
		f.Severity = appendIfMissing(f.Severity, sev.String())
	}
	if k := q.one("kind"); k != "" {
		kind, err := finding.ParseScanKind(k)
		if err != nil {
			return f, &queryParamError{err.Error()}
		}
		f.Kind = string(kind)
	}
	if f.CCMVersion, err = s.ccmVersion(q.one("version"), false); err != nil {
		return f, err
	}
	if c := q.one("control"); c != "" {
		if f.Control, err = s.controlID(c, f.CCMVersion); err != nil {
			return f, err
		}
	}
	return f, nil
}

// ccmVersion resolves a version parameter against the catalogues ("v4.1.0"
// is "4.1"). Empty stays empty unless orDefault, which picks the default
// catalogue. Without catalogues any value passes through.
func (s *Server) ccmVersion(v string, orDefault bool) (string, error) {
	cats := s.opt.Catalogs
	if cats == nil {
		return v, nil
	}
	if v == "" {
		if orDefault {
			return cats.Default(), nil
		}
		return "", nil
	}
	canon, ok := cats.Resolve(v)
	if !ok {
		return "", &queryParamError{fmt.Sprintf("unknown CCM version %q (known: %s)", v, strings.Join(cats.Versions(), ", "))}
	}
	return canon, nil
}

// controlID checks a control id against the catalogue of version, or of
// any version when none is given, so that a typo is a 400 rather than an
// empty list.
func (s *Server) controlID(id, version string) (string, error) {
	id = strings.ToUpper(strings.TrimSpace(id))
	cats := s.opt.Catalogs
	if cats == nil {
		return id, nil
	}
	versions := cats.Versions()
	if version != "" {
		versions = []string{version}
	}
	for _, v := range versions {
		if cat, ok := cats.Get(v); ok {
			if c, ok := cat.Control(id); ok {
				return c.ID, nil
			}
		}
	}
	in := "any CCM version"
	if version != "" {
		in = "CCM " + version
	}
	return "", &queryParamError{fmt.Sprintf("unknown control %q in %s", id, in)}
}

// csvColumns is the header row of the findings export.
var csvColumns = []string{
	"id", "scope", "fingerprint", "kind", "tool", "rule", "title", "severity", "severity_source",
	"cvss_version", "cvss_vector", "cvss_base", "cvss_temporal", "cvss_environmental",
	"status", "suppressed", "location", "cwe", "cve", "first_seen", "last_seen", "sla_due",
	"resolved_at", "resolved_by_run", "controls",
}

// exportFindingsCSV streams every finding the filter selects (limit is
// ignored; cursor, when given, resumes after it) without holding the set in
// memory.
func (s *Server) exportFindingsCSV(w http.ResponseWriter, r *http.Request, f store.FindingFilter) {
	cw := csv.NewWriter(w)
	started := false
	start := func() error {
		started = true
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="starpipe-findings-%s.csv"`, time.Now().UTC().Format("20060102T150405Z")))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		return cw.Write(csvColumns)
	}
	rec := make([]string, len(csvColumns))
	err := s.opt.Store.StreamFindings(r.Context(), f, func(row store.FindingRow) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		f := FindingOf(row)
		return cw.Write(findingCSVRecord(rec, &f))
	})
	if err == nil && !started {
		err = start() // no rows: still a header
	}
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	if err == nil {
		return
	}
	if !started {
		s.readFailed(w, r, err, "findings")
		return
	}
	if !errors.Is(err, context.Canceled) {
		s.log.Error("exporting findings as CSV", "err", err)
	}
	// The 200 and part of the file are out: abort the connection so that
	// the client sees a failed download instead of a silently short file.
	panic(http.ErrAbortHandler)
}

// findingCSVRecord fills rec (reused between rows) with one finding.
func findingCSVRecord(rec []string, f *Finding) []string {
	var ver, vec, base, temp, env string
	if f.CVSS != nil {
		ver, vec = f.CVSS.Version, f.CVSS.Vector
		base = strconv.FormatFloat(f.CVSS.Base, 'f', 1, 64)
		temp = strconv.FormatFloat(f.CVSS.Temporal, 'f', 1, 64)
		env = strconv.FormatFloat(f.CVSS.Environmental, 'f', 1, 64)
	}
	loc := f.Location.URI
	if f.Location.StartLine > 0 {
		loc += ":" + strconv.Itoa(f.Location.StartLine)
	}
	cwe := make([]string, len(f.CWE))
	for i, c := range f.CWE {
		cwe[i] = "CWE-" + strconv.Itoa(c)
	}
	controls := make([]string, len(f.Controls))
	for i, c := range f.Controls {
		controls[i] = c.Version + "/" + c.ID
	}
	resolvedBy := ""
	if f.ResolvedByRun != nil {
		resolvedBy = *f.ResolvedByRun
	}
	vals := []string{
		strconv.FormatInt(f.ID, 10), f.Scope, f.Fingerprint, f.Kind, f.Tool, f.Rule, f.Title, f.Severity, f.SeveritySource,
		ver, vec, base, temp, env,
		string(f.Status), strconv.FormatBool(f.Suppressed), loc, strings.Join(cwe, ";"), strings.Join(f.CVE, ";"),
		csvTime(&f.FirstSeen), csvTime(&f.LastSeen), csvTime(f.SLADue), csvTime(f.ResolvedAt), resolvedBy,
		strings.Join(controls, ";"),
	}
	for i, v := range vals {
		rec[i] = csvSafe(v)
	}
	return rec
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// csvSafe neutralises spreadsheet formula injection (OWASP "CSV
// injection"): titles, rules and locations come from scanned, possibly
// hostile, content, and a cell starting with = + - @ (or a tab or carriage
// return) would run as a formula when the export is opened. A leading
// apostrophe makes spreadsheets show the text as typed.
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// wantsCSV negotiates the findings list format: CSV when text/csv is
// acceptable and preferred to JSON (by q value, then by order).
func wantsCSV(accept string) bool {
	csvQ, jsonQ := -1.0, -1.0
	csvAt, jsonAt := 0, 0
	for i, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch mt {
		case "text/csv":
			if q > csvQ {
				csvQ, csvAt = q, i
			}
		case "application/json":
			if q > jsonQ {
				jsonQ, jsonAt = q, i
			}
		}
	}
	if csvQ <= 0 {
		return false
	}
	return csvQ > jsonQ || (csvQ == jsonQ && csvAt < jsonAt)
}

func (s *Server) listControls(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "version", "all")
	if err != nil {
		writeParamError(w, err)
		return
	}
	version, err := s.ccmVersion(q.one("version"), true)
	if err != nil {
		writeParamError(w, err)
		return
	}
	all := false
	if v := q.one("all"); v != "" {
		if all, err = strconv.ParseBool(v); err != nil {
			writeParamError(w, &queryParamError{fmt.Sprintf("invalid all %q (want true or false)", v)})
			return
		}
	}
	counts, err := s.opt.Store.ControlSummary(r.Context(), version)
	if err != nil {
		s.readFailed(w, r, err, "control counts")
		return
	}
	writeJSON(w, http.StatusOK, ControlList{Version: version, Items: s.controlItems(version, counts, all)})
}

// controlItems joins counts with catalogue titles, in catalogue order; all
// adds the controls no finding is linked to.
func (s *Server) controlItems(version string, counts []store.ControlCount, all bool) []ControlCount {
	var cat *mapping.Catalog
	if s.opt.Catalogs != nil {
		cat, _ = s.opt.Catalogs.Get(version)
	}
	items := []ControlCount{}
	if cat == nil {
		for _, c := range counts {
			items = append(items, ControlCount{Version: c.Version, ID: c.ID, Open: c.Open, Total: c.Total, Linked: c.Linked})
		}
		return items
	}
	byID := make(map[string]store.ControlCount, len(counts))
	for _, c := range counts {
		byID[c.ID] = c
	}
	for _, ctl := range cat.Controls {
		c, ok := byID[ctl.ID]
		if !ok && !all {
			continue
		}
		delete(byID, ctl.ID)
		it := ControlCount{Version: cat.Version, ID: ctl.ID, Domain: ctl.Domain, DomainName: cat.DomainName(ctl.Domain),
			Title: ctl.Title, Open: c.Open, Total: c.Total, Linked: c.Linked}
		if it.Open == nil {
			it.Open = map[string]int{}
			for _, sev := range finding.Severities() {
				it.Open[sev.String()] = 0
			}
		}
		items = append(items, it)
	}
	// Links to ids the catalogue lacks (rules written against another
	// catalogue build) are still shown rather than silently dropped.
	for _, c := range counts {
		if _, ok := byID[c.ID]; ok {
			items = append(items, ControlCount{Version: c.Version, ID: c.ID, Open: c.Open, Total: c.Total, Linked: c.Linked})
		}
	}
	return items
}

// readFailed answers an error of reading what.
func (s *Server) readFailed(w http.ResponseWriter, r *http.Request, err error, what string) {
	s.fail(w, r, err, what)
}

// queryParamError is a bad query parameter; its message names the
// parameter.
type queryParamError struct{ msg string }

func (e *queryParamError) Error() string { return e.msg }

func writeParamError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadRequest, "invalid_parameter", err.Error())
}

// queryParams is a validated URL query.
type queryParams struct{ v url.Values }

// readQuery rejects parameters outside allowed, so that a misspelt filter
// (severities=high) is an error rather than an unfiltered answer, and
// single-valued parameters given twice.
func readQuery(v url.Values, allowed ...string) (queryParams, error) {
	for k, vals := range v {
		if !slices.Contains(allowed, k) {
			return queryParams{}, &queryParamError{fmt.Sprintf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", "))}
		}
		if len(vals) > 1 && !multiValuedParam(k) {
			return queryParams{}, &queryParamError{fmt.Sprintf("query parameter %q given %d times", k, len(vals))}
		}
	}
	return queryParams{v}, nil
}

func multiValuedParam(k string) bool { return k == "status" || k == "severity" || k == "review" }

func (q queryParams) one(k string) string { return strings.TrimSpace(q.v.Get(k)) }

// list splits comma-separated and repeated values: severity=high,critical
// is severity=high&severity=critical.
func (q queryParams) list(k string) []string {
	var out []string
	for _, v := range q.v[k] {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func (q queryParams) limit() (int, error) {
	v := q.one("limit")
	if v == "" {
		return store.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxPageSize {
		return 0, &queryParamError{fmt.Sprintf("invalid limit %q (want an integer from 1 to %d)", v, store.MaxPageSize)}
	}
	return n, nil
}

func appendIfMissing(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
