package api

import (
	"errors"
	"net/http"

	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store"
)

// fail answers err: the one place that turns the domain packages' typed
// errors into HTTP statuses. what names the thing the request was about
// ("schedule \"web\"", "findings"), for the message. Errors that are the
// server's (the database away, a bug) are logged here, once, and answered
// without their text, which may name internals.
//
//   - the caller's request: 400 (a bad field or parameter), 413, 422 (a
//     value the domain or the database refuses), 404, 409;
//   - the database unreachable, shutting down or overloaded: 503, so that
//     clients and load balancers retry;
//   - anything else: 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, what string) {
	var ia *store.InvalidArgumentError
	var qp *queryParamError
	var rs *store.RunStateError
	var fs *store.FindingStateError
	switch {
	case errors.As(err, &ia):
		writeError(w, http.StatusBadRequest, "invalid_parameter", ia.Error())
	case errors.As(err, &qp):
		writeError(w, http.StatusBadRequest, "invalid_parameter", qp.Error())
	case errors.Is(err, pipeline.ErrInvalidRequest):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, pipeline.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, pipeline.ErrUnsupportedFormat):
		writeError(w, http.StatusUnprocessableEntity, "unsupported_format", err.Error())
	case errors.Is(err, pipeline.ErrIntakeClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", what+" not found")
	case errors.As(err, &rs):
		writeError(w, http.StatusConflict, "conflict", rs.Error())
	case errors.As(err, &fs):
		writeError(w, http.StatusConflict, "conflict", fs.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", what+" already exists")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	case store.IsInvalidData(err):
		s.log.Warn("value refused by the database", "what", what, "err", err)
		writeError(w, http.StatusUnprocessableEntity, "invalid_data", "a value of "+what+" cannot be stored (a NUL byte, or over a size limit)")
	case store.IsUnavailable(err):
		s.log.Error("database unavailable", "what", what, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the database is unavailable for "+what+"; try again")
	default:
		s.log.Error("request failed", "what", what, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", what+" failed")
	}
}
