package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/starpipe/starpipe/review"
	"github.com/starpipe/starpipe/store"
)

// Manual findings (pentest results), notes on findings with their edit
// history, and retests on demand.

func init() { routeGroups = append(routeGroups, (*Server).registerManual) }

func (s *Server) registerManual() {
	if s.opt.Store == nil {
		return
	}
	s.Handle("POST /v1/findings", s.createManualFinding, RoleOperator, RoleOwner)
	s.Handle("GET /v1/findings/{id}/notes", s.listNotes, RoleOperator, RoleOwner, RoleAuditor)
	s.Handle("POST /v1/findings/{id}/notes", s.addNote, RoleOperator, RoleOwner)
	s.Handle("PATCH /v1/findings/{id}/notes/{note}", s.editNote, RoleOperator, RoleOwner)
	s.Handle("POST /v1/findings/{id}/retest", s.retestFinding, RoleOperator, RoleOwner)
}

// Bounds of a manual finding's request: the JSON part, each evidence file
// and their number.
const (
	maxManualJSON     = 64 << 10
	maxEvidenceFile   = 32 << 20
	maxEvidenceFiles  = 20
	maxEvidenceHeader = 255
)

func (s *Server) findingsService() *review.Findings {
	return review.NewFindings(s.opt.Store, s.opt.Enrich, nil, s.opt.Logger)
}

// manualRequest is a manual finding: the JSON body, or the "finding" part
// of a multipart form whose "evidence" parts are files.
type manualRequest struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Scope       string `json:"scope"`
	Kind        string `json:"kind"`
	CVSSVector  string `json:"cvss_vector"`
	CWE         []int  `json:"cwe"`
	Severity    string `json:"severity"`
}

// manualCreated answers POST /v1/findings.
type manualCreated struct {
	ID      int64         `json:"id"`
	Created bool          `json:"created"` // false: the same scope and title updated an existing finding
	RunID   string        `json:"run_id"`
	Finding FindingDetail `json:"finding"`
}

func (s *Server) createManualFinding(w http.ResponseWriter, r *http.Request) {
	var req manualRequest
	var evidence []review.Evidence
	defer func() {
		// Chunks an artifact took are kept; the rest go.
		for _, e := range evidence {
			s.opt.Store.DiscardArtifact(r.Context(), e.Staged)
		}
	}()
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") {
		var err error
		if evidence, err = s.readManualForm(r, params["boundary"], &req); err != nil {
			s.manualFailed(w, r, err, "evidence")
			return
		}
	} else if !decodeBody(w, r, maxManualJSON, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	res, err := s.findingsService().CreateManual(r.Context(), reviewActor(p), review.Manual{
		Title: req.Title, Description: req.Description, Scope: req.Scope, Kind: req.Kind,
		Vector: req.CVSSVector, CWE: req.CWE, Severity: req.Severity, Evidence: evidence,
	})
	if err != nil {
		s.manualFailed(w, r, err, "finding")
		return
	}
	d, err := s.opt.Store.GetFinding(r.Context(), res.ID)
	if err != nil {
		s.fail(w, r, err, "finding")
		return
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", "/v1/findings/"+strconv.FormatInt(res.ID, 10))
	writeJSON(w, status, manualCreated{ID: res.ID, Created: res.Created, RunID: res.RunID, Finding: FindingDetailOf(d)})
}

// formError is a multipart body the API refuses (400).
type formError struct{ msg string }

func (e *formError) Error() string { return e.msg }

// readManualForm reads the "finding" part into req and stages every
// "evidence" part as artifact content, one chunk at a time.
func (s *Server) readManualForm(r *http.Request, boundary string, req *manualRequest) ([]review.Evidence, error) {
	if boundary == "" {
		return nil, &formError{"multipart body without boundary"}
	}
	mr := multipart.NewReader(r.Body, boundary)
	var out []review.Evidence
	sawFinding := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, &formError{"multipart body: " + err.Error()}
		}
		switch part.FormName() {
		case "finding":
			dec := json.NewDecoder(io.LimitReader(part, maxManualJSON))
			dec.DisallowUnknownFields()
			if err := dec.Decode(req); err != nil {
				return out, &formError{`"finding" part: ` + strings.TrimPrefix(err.Error(), "json: ")}
			}
			sawFinding = true
		case "evidence":
			if len(out) == maxEvidenceFiles {
				return out, &formError{fmt.Sprintf("at most %d evidence files", maxEvidenceFiles)}
			}
			name, ctype := part.FileName(), part.Header.Get("Content-Type")
			if len(name) > maxEvidenceHeader || len(ctype) > maxEvidenceHeader {
				return out, &formError{fmt.Sprintf("evidence file name and content type are at most %d bytes", maxEvidenceHeader)}
			}
			st, err := s.opt.Store.StageArtifact(r.Context(), part, maxEvidenceFile)
			if errors.Is(err, store.ErrTooLarge) {
				return out, &formError{fmt.Sprintf("evidence file %q is larger than %d bytes", name, maxEvidenceFile)}
			}
			if err != nil {
				return out, err
			}
			out = append(out, review.Evidence{Staged: st, FileName: name, ContentType: ctype})
		default:
			return out, &formError{fmt.Sprintf("unexpected part %q (want \"finding\" and \"evidence\" files)", part.FormName())}
		}
	}
	if !sawFinding {
		return out, &formError{`multipart body has no "finding" part`}
	}
	return out, nil
}

// findingID reads the {id} path value; it answers 404 itself when it is
// not an id any finding can have.
func findingID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "finding "+raw+" not found")
		return 0, false
	}
	return id, true
}

type noteRequest struct {
	Text string `json:"text"`
}

func (s *Server) listNotes(w http.ResponseWriter, r *http.Request) {
	id, ok := findingID(w, r)
	if !ok {
		return
	}
	notes, err := s.opt.Store.ListNotes(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, "finding "+r.PathValue("id"))
		return
	}
	items := make([]Note, len(notes))
	for i, n := range notes {
		items[i] = NoteOf(n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) addNote(w http.ResponseWriter, r *http.Request) {
	id, ok := findingID(w, r)
	if !ok {
		return
	}
	var req noteRequest
	if !decodeBody(w, r, maxReviewBody, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	n, err := s.findingsService().AddNote(r.Context(), reviewActor(p), id, req.Text)
	if err != nil {
		s.manualFailed(w, r, err, "finding "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusCreated, NoteOf(n))
}

func (s *Server) editNote(w http.ResponseWriter, r *http.Request) {
	id, ok := findingID(w, r)
	if !ok {
		return
	}
	raw := r.PathValue("note")
	noteID, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || noteID <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "note "+raw+" not found")
		return
	}
	var req noteRequest
	if !decodeBody(w, r, maxReviewBody, &req) {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	n, err := s.findingsService().EditNote(r.Context(), reviewActor(p), id, noteID, req.Text)
	if err != nil {
		s.manualFailed(w, r, err, "note "+raw+" of finding "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, NoteOf(n))
}

// retestView answers POST /v1/findings/{id}/retest.
type retestView struct {
	FindingID int64  `json:"finding_id"`
	Created   bool   `json:"created"` // false: a retest was already pending
	Retest    Retest `json:"retest"`
}

func (s *Server) retestFinding(w http.ResponseWriter, r *http.Request) {
	id, ok := findingID(w, r)
	if !ok {
		return
	}
	p, _ := PrincipalFrom(r.Context())
	rt, created, err := s.findingsService().RequestRetest(r.Context(), reviewActor(p), id)
	if err != nil {
		s.manualFailed(w, r, err, "finding "+r.PathValue("id"))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	writeJSON(w, status, retestView{FindingID: id, Created: created, Retest: RetestOf(rt)})
}

// manualFailed answers the form errors and hands the rest to the review
// mapper (403, 400 for a refused field) and the one error mapper.
func (s *Server) manualFailed(w http.ResponseWriter, r *http.Request, err error, what string) {
	var fe *formError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, "bad_request", fe.Error())
		return
	}
	s.reviewFailed(w, r, err, what)
}
