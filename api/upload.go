package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
)

func init() { routeGroups = append(routeGroups, (*Server).registerUpload) }

func (s *Server) registerUpload() {
	if s.opt.Intake == nil {
		return
	}
	s.Handle("POST /v1/runs", s.upload, RoleOperator, RoleIngest)
}

// upload accepts a scan output file as the raw body or as the "file" part
// of a multipart form, and answers 202 once the file and its run are
// durably stored; parsing happens behind the outbox.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	q := r.URL.Query()
	if msg := p.uploadRefusal(q.Get("scope"), q.Get("kind")); msg != "" {
		writeError(w, http.StatusForbidden, "forbidden", msg)
		return
	}
	req := pipeline.Request{
		Kind:       q.Get("kind"),
		Scope:      q.Get("scope"),
		Format:     q.Get("format"),
		ScheduleID: q.Get("schedule"),
		Actor:      p.Name,
		FileName:   q.Get("filename"),
	}
	var body io.Reader = r.Body
	if mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && strings.HasPrefix(mt, "multipart/") {
		mr, err := multipartFile(r, params["boundary"])
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		defer mr.Close()
		body = mr
		if req.FileName == "" {
			req.FileName = mr.name
		}
	}
	id, err := s.opt.Intake.Submit(r.Context(), body, req)
	if err != nil {
		s.fail(w, r, err, "the upload")
		return
	}
	w.Header().Set("Location", "/v1/runs/"+id)
	writeJSON(w, http.StatusAccepted, RunAccepted{ID: id, Status: finding.RunReceived})
}

type filePart struct {
	io.ReadCloser
	name string
}

// multipartFile streams the "file" part without buffering the form.
func multipartFile(r *http.Request, boundary string) (*filePart, error) {
	if boundary == "" {
		return nil, errors.New("multipart body without boundary")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, err
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New(`multipart body has no "file" part`)
		}
		if err != nil {
			return nil, err
		}
		if part.FormName() == "file" {
			return &filePart{ReadCloser: part, name: part.FileName()}, nil
		}
		part.Close()
	}
}
