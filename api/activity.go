package api

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/starpipe/starpipe/activity"
	"github.com/starpipe/starpipe/store"
)

// The activity log: GET /v1/activity lists rows (JSON pages or CSV), GET
// /v1/activity/export writes a self-contained, verifiable stretch of the
// hash chain (see package activity). Rows are listed in chain order.

func init() { routeGroups = append(routeGroups, (*Server).registerActivity) }

// activityReaders may read the log: every person's role. The log is the
// evidence of who changed what, so the people it records can see it; the
// ingest role (CI pipelines) cannot.
var activityReaders = []string{RoleOperator, RoleOwner, RoleAuditor}

func (s *Server) registerActivity() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("GET /v1/activity", s.listActivity, activityReaders...)
	s.Handle("GET /v1/activity/export", s.exportActivity, activityReaders...)
}

// activityPage is the JSON answer of GET /v1/activity: the rows in the
// export's shape, so that a listed row verifies like an exported one.
type activityPage = listPage[activity.Entry]

func (s *Server) listActivity(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "from", "to", "actor", "entity_type", "entity_id", "finding", "format", "limit", "cursor")
	if err != nil {
		writeParamError(w, err)
		return
	}
	f, err := activityFilter(q)
	if err != nil {
		writeParamError(w, err)
		return
	}
	asCSV := wantsCSV(r.Header.Get("Accept"))
	switch format := q.one("format"); format {
	case "":
	case "csv":
		asCSV = true
	case "json":
		asCSV = false
	default:
		writeParamError(w, &queryParamError{fmt.Sprintf("invalid format %q (allowed: json, csv)", format)})
		return
	}
	if asCSV {
		s.exportActivityCSV(w, r, f)
		return
	}
	rows, next, err := s.opt.Store.ListActivity(r.Context(), f)
	if err != nil {
		s.readFailed(w, r, err, "activity")
		return
	}
	items := make([]activity.Entry, len(rows))
	for i, row := range rows {
		items[i] = activity.FromStore(row)
	}
	writeJSON(w, http.StatusOK, activityPage(newListPage(items, next)))
}

// activityFilter validates the query: times as RFC 3339 or a date (UTC
// midnight); finding=ID is entity_type=finding&entity_id=ID.
func activityFilter(q queryParams) (store.ActivityFilter, error) {
	f := store.ActivityFilter{Actor: q.one("actor"), SubjectType: q.one("entity_type"), SubjectID: q.one("entity_id"), Cursor: q.one("cursor")}
	var err error
	if f.Limit, err = q.limit(); err != nil {
		return f, err
	}
	if f.From, f.To, err = timeRange(q); err != nil {
		return f, err
	}
	if id := q.one("finding"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err != nil || n <= 0 {
			return f, &queryParamError{fmt.Sprintf("invalid finding %q (want a finding id)", id)}
		}
		if (f.SubjectType != "" && f.SubjectType != "finding") || (f.SubjectID != "" && f.SubjectID != id) {
			return f, &queryParamError{"finding contradicts entity_type or entity_id"}
		}
		f.SubjectType, f.SubjectID = "finding", id
	}
	return f, nil
}

func timeRange(q queryParams) (from, to time.Time, err error) {
	if from, err = queryTime(q, "from"); err != nil {
		return
	}
	if to, err = queryTime(q, "to"); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		err = &queryParamError{"from must be before to"}
	}
	return
}

func queryTime(q queryParams, k string) (time.Time, error) {
	v := q.one(k)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, &queryParamError{fmt.Sprintf("invalid %s %q (want RFC 3339, e.g. 2025-01-31T00:00:00Z, or a date 2025-01-31)", k, v)}
}

// activityCSVColumns is the header row of the activity CSV.
var activityCSVColumns = []string{"seq", "id", "time", "actor", "action", "entity_type", "entity_id", "run_id",
	"before", "after", "prev_hash", "hash"}

// exportActivityCSV streams every row f selects (limit ignored; a cursor
// resumes after it), as exportFindingsCSV does for findings. The CSV is
// for reading; the export is what verifies.
func (s *Server) exportActivityCSV(w http.ResponseWriter, r *http.Request, f store.ActivityFilter) {
	cw := csv.NewWriter(w)
	started := false
	start := func() error {
		started = true
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="starpipe-activity-%s.csv"`, time.Now().UTC().Format("20060102T150405Z")))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		return cw.Write(activityCSVColumns)
	}
	rec := make([]string, len(activityCSVColumns))
	err := s.opt.Store.StreamActivity(r.Context(), f, func(row store.ActivityEntry) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		e := activity.FromStore(row)
		run := ""
		if e.RunID != nil {
			run = *e.RunID
		}
		vals := []string{strconv.FormatInt(e.Seq, 10), strconv.FormatInt(e.ID, 10), e.Time, e.Actor, e.Action,
			e.EntityType, e.EntityID, run, compactJSON(row.Before), compactJSON(row.After), e.PrevHash, e.Hash}
		for i, v := range vals {
			rec[i] = csvSafe(v)
		}
		return cw.Write(rec)
	})
	if err == nil && !started {
		err = start()
	}
	if err == nil {
		cw.Flush()
		err = cw.Error()
	}
	s.finishStream(w, r, err, started, "activity")
}

// compactJSON is the stored jsonb text, or "" for none.
func compactJSON(b []byte) string {
	if b == nil {
		return ""
	}
	return string(b)
}

// finishStream handles the error of a streamed download: before the first
// byte it is an ordinary error answer; after, the connection is aborted so
// that the client sees a failed download instead of a silently short file.
func (s *Server) finishStream(w http.ResponseWriter, r *http.Request, err error, started bool, what string) {
	if err == nil {
		return
	}
	if !started {
		s.readFailed(w, r, err, what)
		return
	}
	if !errors.Is(err, context.Canceled) {
		s.log.Error("streaming "+what, "err", err)
	}
	panic(http.ErrAbortHandler)
}

func (s *Server) exportActivity(w http.ResponseWriter, r *http.Request) {
	q, err := readQuery(r.URL.Query(), "from", "to")
	if err != nil {
		writeParamError(w, err)
		return
	}
	from, to, err := timeRange(q)
	if err != nil {
		writeParamError(w, err)
		return
	}
	sw := &startedWriter{w: w, start: func() {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="starpipe-activity-%s.jsonl"`, time.Now().UTC().Format("20060102T150405Z")))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
	}}
	err = activity.WriteExport(r.Context(), sw, s.opt.Store, from, to, time.Now())
	s.finishStream(w, r, err, sw.started, "activity export")
}

// startedWriter sends the headers on the first write, so that an error
// before any output can still be an error answer.
type startedWriter struct {
	w       http.ResponseWriter
	start   func()
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	return s.w.Write(p)
}
