package api

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/store/storetest"
)

const nucleiLine = `{"template-id":"git-config","info":{"name":"Git config","severity":"medium"},"host":"https://shop.example.com","matched-at":"https://shop.example.com/.git/config","type":"http"}` + "\n"

// TestUpload checks POST /v1/runs against the real intake and database:
// raw and multipart bodies are stored as runs before the 202, and what the
// caller got wrong is answered with the status that says so.
func TestUpload(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	srv := New(Options{Auth: storeAuthenticator{st}, Store: st, Intake: pipeline.NewIntake(st, 4096, nil)})
	token := func(role string) string {
		tok, err := st.CreateToken(t.Context(), "upload-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ingestTok, auditorTok := token(RoleIngest), token(RoleAuditor)
	post := func(tok, query, contentType string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/runs?"+query, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	runOf := func(rec *httptest.ResponseRecorder) (string, string, string) {
		t.Helper()
		var res struct{ ID string }
		if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &res) != nil || res.ID == "" {
			t.Fatalf("upload = %d %s", rec.Code, rec.Body)
		}
		if rec.Header().Get("Location") != "/v1/runs/"+res.ID {
			t.Errorf("Location = %q", rec.Header().Get("Location"))
		}
		var status, format, file string
		if err := storetest.SQL(t, st).QueryRow(t.Context(), `SELECT status, format, coalesce(file_name, '') FROM scan_runs WHERE id = $1::uuid`, res.ID).Scan(&status, &format, &file); err != nil {
			t.Fatalf("run %s not stored: %v", res.ID, err)
		}
		return status, format, file
	}

	if status, format, _ := runOf(post(ingestTok, "scope=https://shop.example.com&filename=scan.jsonl", "application/octet-stream", []byte(nucleiLine))); status != "received" || format != "nuclei" {
		t.Errorf("raw upload: status %s format %s", status, format)
	}

	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	_ = w.WriteField("note", "ignored")
	fw, _ := w.CreateFormFile("file", "nightly.jsonl")
	_, _ = fw.Write([]byte(nucleiLine))
	_ = w.Close()
	if _, _, file := runOf(post(ingestTok, "scope=https://shop.example.com&kind=external", w.FormDataContentType(), mp.Bytes())); file != "nightly.jsonl" {
		t.Errorf("multipart upload: file name %q", file)
	}

	for _, tc := range []struct {
		name, tok, query string
		body             string
		want             int
		contains         string
	}{
		{"no scope", ingestTok, "", nucleiLine, http.StatusBadRequest, "scope is required"},
		{"bad kind", ingestTok, "scope=x&kind=internal", nucleiLine, http.StatusBadRequest, "invalid kind"},
		{"unsupported", ingestTok, "scope=x&filename=trivy.json", `{"SchemaVersion":2,"Results":[]}`, http.StatusUnprocessableEntity, "trivy.json"},
		{"too large", ingestTok, "scope=x", strings.Repeat(nucleiLine, 40), http.StatusRequestEntityTooLarge, "too large"},
		{"wrong role", auditorTok, "scope=x", nucleiLine, http.StatusForbidden, "may not"},
	} {
		rec := post(tc.tok, tc.query, "", []byte(tc.body))
		if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, rec.Code, rec.Body, tc.want, tc.contains)
		}
	}
}
