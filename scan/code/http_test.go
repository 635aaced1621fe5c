package code

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// gitHTTPServer serves the repositories under root over git's smart HTTP
// protocol (git http-backend behind net/http/cgi, on loopback), to clients
// that send basic auth user/pass. It counts the requests that did.
func gitHTTPServer(t *testing.T, root, user, pass string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed for the smart HTTP test server: %v", err)
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	var authed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &authed
}

func TestRunCloneOverHTTPWithToken(t *testing.T) {
	r := newTestRepo(t)
	const token = "ghs_httpTestToken42"
	srv, authed := gitHTTPServer(t, filepath.Dir(r.dir), "x-access-token", token)
	repoURL := srv.URL + "/" + filepath.Base(r.dir) + "/.git"

	// The checkout must not keep the token, and the command must not see
	// it (other than in SECRET, which the test hands it to look with).
	cfg := baseConfig(t, repoURL, "/bin/sh", "-c",
		`grep -rqF "$SECRET" .git "$HOME" && exit 9; env | grep -v '^SECRET=' | grep -qF "$SECRET" && exit 8; cat findings.sarif`)
	cfg.Token = token
	cfg.Ref = "feature"
	cfg.Env = []string{"SECRET=" + token}
	var out bytes.Buffer
	res, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out.String() != sarifFeature || res.Commit != r.feature {
		t.Fatalf("got commit %s output %q, want the feature branch", res.Commit, out.String())
	}
	if authed.Load() == 0 {
		t.Fatal("the server saw no authenticated request")
	}
	assertEmptyDir(t, cfg.WorkDir)

	t.Run("wrong token", func(t *testing.T) {
		cfg := baseConfig(t, repoURL, "true")
		cfg.Token = "ghs_wrongTokenValue"
		_, err := Run(context.Background(), cfg, &bytes.Buffer{})
		if !errors.Is(err, ErrClone) || strings.Contains(err.Error(), cfg.Token) {
			t.Fatalf("err = %v, want ErrClone without the token", err)
		}
	})
	t.Run("credentials in the URL", func(t *testing.T) {
		withUser := strings.Replace(repoURL, "http://", "http://x-access-token:"+token+"@", 1)
		cfg := baseConfig(t, withUser, "/bin/sh", "-c", `grep -rqF "$SECRET" .git && exit 9; cat findings.sarif`)
		cfg.Env = []string{"SECRET=" + token}
		var out bytes.Buffer
		if _, err := Run(context.Background(), cfg, &out); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if out.String() != sarifMain {
			t.Fatalf("output = %q, want the default branch's findings", out.String())
		}
	})
}
