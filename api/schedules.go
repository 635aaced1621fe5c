package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/starpipe/starpipe/credentials"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store"
)

func init() { routeGroups = append(routeGroups, (*Server).registerSchedules) }

// maxScheduleBody bounds a schedule document; real ones are well under a
// kilobyte or two.
const maxScheduleBody = 1 << 20

// defaultLedgerWindow is how far back GET .../ledger reaches when the
// caller gives no from: a month of a daily schedule, a bounded answer for
// a frequent one.
const defaultLedgerWindow = 31 * 24 * time.Hour

// registerSchedules serves scan schedules: security operations write them;
// domain owners and auditors read them and their run ledger.
func (s *Server) registerSchedules() {
	if s.opt.Store == nil {
		return
	}
	read := []string{RoleOperator, RoleOwner, RoleAuditor}
	s.Handle("GET /v1/schedules", s.listSchedules, read...)
	s.Handle("POST /v1/schedules", s.createSchedule, RoleOperator)
	s.Handle("GET /v1/schedules/{name}", s.getSchedule, read...)
	s.Handle("PUT /v1/schedules/{name}", s.putSchedule, RoleOperator)
	s.Handle("DELETE /v1/schedules/{name}", s.deleteSchedule, RoleOperator)
	s.Handle("GET /v1/schedules/{name}/ledger", s.scheduleLedger, read...)
}

// scheduleErrorBody is the 422 answer: which field is wrong and why.
type scheduleErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeScheduleError(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusUnprocessableEntity, scheduleErrorBody{Error: "invalid_schedule", Message: msg, Field: field})
}

// decodeSchedule reads and validates a schedule body. pathName, when set,
// is the name in the URL, which the body must repeat or leave out.
//
// Validation applies the admin's bounds (Options.SchedulePolicy) and then
// spec.Admit: an operator may choose targets, analysers by name and
// credentials by name, only within what the configuration allows.
func (s *Server) decodeSchedule(w http.ResponseWriter, r *http.Request, pathName string) (spec.Schedule, bool) {
	body := http.MaxBytesReader(w, r.Body, maxScheduleBody)
	raw, err := readJSONObject(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", maxScheduleBody))
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", "request body must be one JSON schedule object: "+err.Error())
		}
		return spec.Schedule{}, false
	}
	if pathName != "" {
		// A PUT may leave the name to the URL.
		var probe struct {
			Name *string `json:"name"`
		}
		_ = json.Unmarshal(raw, &probe)
		switch {
		case probe.Name == nil:
			raw, _ = json.Marshal(mergeName(raw, pathName))
		case *probe.Name != pathName:
			writeScheduleError(w, "name", fmt.Sprintf("name %q differs from the name in the URL (%q); schedules cannot be renamed", *probe.Name, pathName))
			return spec.Schedule{}, false
		}
	}
	opts := s.schedulePolicy()
	sp, err := spec.DecodeJSON(strings.NewReader(string(raw)), opts)
	if err == nil {
		err = spec.Admit(r.Context(), sp, opts)
	}
	if err != nil {
		var fe *spec.FieldError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &fe):
			writeScheduleError(w, fe.Field, fe.Error())
		case errors.As(err, &typ):
			writeScheduleError(w, typ.Field, fmt.Sprintf("%s: must be a JSON %s", typ.Field, typ.Type.Kind()))
		case strings.Contains(err.Error(), "json: unknown field "):
			_, f, _ := strings.Cut(err.Error(), "json: unknown field ")
			writeScheduleError(w, strings.Trim(f, `"`), "unknown field "+f)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the request ended before the schedule was checked")
		case strings.HasPrefix(err.Error(), "decoding schedule"):
			writeScheduleError(w, "", err.Error())
		default:
			// Admit's look-ups failed (the database is unreachable): not
			// the client's fault.
			s.scheduleFailed(w, r, "checking schedule", sp.Name, err)
		}
		return spec.Schedule{}, false
	}
	return sp, true
}

// readJSONObject reads exactly one JSON object.
func readJSONObject(r io.Reader) (json.RawMessage, error) {
	dec := json.NewDecoder(r)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if t := strings.TrimSpace(string(raw)); !strings.HasPrefix(t, "{") {
		return nil, errors.New("not a JSON object")
	}
	return raw, nil
}

// mergeName returns the object raw with "name" set.
func mergeName(raw json.RawMessage, name string) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	m["name"], _ = json.Marshal(name)
	return m
}

// schedulePolicy returns the options schedules are validated with: the
// configured ones, with the store as the credential look-up when none is
// given.
func (s *Server) schedulePolicy() spec.Options {
	opts := s.opt.SchedulePolicy
	if opts.Credentials == nil && s.opt.Store != nil {
		opts.Credentials = credentials.ScopeLookup{St: s.opt.Store}
	}
	return opts
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	scs, err := s.opt.Store.ListSchedules(r.Context())
	if err != nil {
		s.scheduleFailed(w, r, "listing schedules", "", err)
		return
	}
	now := time.Now()
	views := make([]ScheduleView, 0, len(scs))
	for _, sc := range scs {
		v, err := ScheduleViewOf(sc, now)
		if err != nil {
			s.scheduleFailed(w, r, "reading schedule", sc.Name, err)
			return
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, ScheduleList{Schedules: views})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sc, err := s.opt.Store.GetSchedule(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schedule named %q", name))
		return
	}
	if err != nil {
		s.scheduleFailed(w, r, "reading schedule", name, err)
		return
	}
	s.writeSchedule(w, r, http.StatusOK, sc)
}

func (s *Server) writeSchedule(w http.ResponseWriter, r *http.Request, status int, sc store.Schedule) {
	v, err := ScheduleViewOf(sc, time.Now())
	if err != nil {
		s.scheduleFailed(w, r, "reading schedule", sc.Name, err)
		return
	}
	writeJSON(w, status, v)
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) {
	sp, ok := s.decodeSchedule(w, r, "")
	if !ok {
		return
	}
	rec, err := store.ScheduleOf(sp)
	if err == nil {
		err = s.opt.Store.CreateSchedule(r.Context(), rec, actorOf(r))
	}
	if errors.Is(err, store.ErrConflict) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("schedule %q already exists; PUT /v1/schedules/%s replaces it", sp.Name, sp.Name))
		return
	}
	if err != nil {
		s.scheduleFailed(w, r, "creating schedule", sp.Name, err)
		return
	}
	s.readBack(w, r, http.StatusCreated, sp.Name)
}

func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sp, ok := s.decodeSchedule(w, r, name)
	if !ok {
		return
	}
	rec, err := store.ScheduleOf(sp)
	if err == nil {
		err = s.opt.Store.UpdateSchedule(r.Context(), rec, actorOf(r))
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schedule named %q; POST /v1/schedules creates one", name))
		return
	}
	if err != nil {
		s.scheduleFailed(w, r, "updating schedule", name, err)
		return
	}
	s.readBack(w, r, http.StatusOK, name)
}

// readBack answers a write with the stored schedule, as GET shows it.
func (s *Server) readBack(w http.ResponseWriter, r *http.Request, status int, name string) {
	sc, err := s.opt.Store.GetSchedule(r.Context(), name)
	if err != nil {
		s.scheduleFailed(w, r, "reading schedule", name, err)
		return
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/schedules/"+url.PathEscape(name))
	}
	s.writeSchedule(w, r, status, sc)
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.opt.Store.DeleteSchedule(r.Context(), name, actorOf(r))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schedule named %q", name))
		return
	}
	if err != nil {
		s.scheduleFailed(w, r, "deleting schedule", name, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// scheduleLedger lists a schedule's ledger rows with due times in
// [from, to) (RFC 3339; from defaults to 31 days ago, to to open). The
// ledger of a deleted schedule stays readable: it is evidence.
func (s *Server) scheduleLedger(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	from := time.Now().Add(-defaultLedgerWindow)
	var to time.Time
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(p.key)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%s: %q is not an RFC 3339 time like 2030-01-31T00:00:00Z", p.key, v))
			return
		}
		*p.dst = t
	}
	if !to.IsZero() && !to.After(from) {
		writeError(w, http.StatusBadRequest, "bad_request", "to must be after from")
		return
	}
	entries, err := s.opt.Store.ListLedger(r.Context(), name, from, to)
	if err != nil {
		s.scheduleFailed(w, r, "reading the ledger", name, err)
		return
	}
	if len(entries) == 0 {
		if _, err := s.opt.Store.GetSchedule(r.Context(), name); errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schedule named %q", name))
			return
		}
	}
	writeJSON(w, http.StatusOK, Ledger{Schedule: name, From: from.UTC(), To: to.UTC(), Entries: LedgerEntriesOf(entries)})
}

func (s *Server) scheduleFailed(w http.ResponseWriter, r *http.Request, what, name string, err error) {
	s.fail(w, r, fmt.Errorf("%s %q: %w", what, name, err), what)
}
