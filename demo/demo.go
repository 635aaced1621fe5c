// Package demo is the deliberately weak web application that `starpipe dev`
// serves on loopback, so that the example schedules have something to find
// within minutes of `make run`. Every weakness here is one that a template
// in configs/templates detects; none of it must ever face a network.
package demo

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Handler serves the demo shop. bearer is the token that opens /admin; the
// authenticated example schedule holds it as a vault credential.
func Handler(bearer string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page(w, "starpipe demo shop", `<h1>starpipe demo shop</h1>
<p>A deliberately vulnerable application for starpipe's demo. Loopback only.</p>
<ul><li><a href="/login">Sign in</a></li><li><a href="/files/">Files</a></li><li><a href="/starpipe-demo/vuln?id=1">Product 1</a></li></ul>`)
	})
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Sign in", `<form method="post" action="/login"><input name="user" type="text"><input name="password" type="password"><button>Sign in</button></form>`)
	})
	// Weakness: repository metadata inside the document root.
	mux.HandleFunc("GET /.git/config", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n[remote \"origin\"]\n\turl = https://git.example.invalid/shop.git\n")
	})
	// Weakness: an environment file with (fake) secrets.
	mux.HandleFunc("GET /.env", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusOK, "APP_ENV=production\nDB_PASSWORD=demo-not-a-secret\nSESSION_KEY=demo-not-a-secret\n")
	})
	// Weakness: an automatic directory index.
	mux.HandleFunc("GET /files/", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Index of /files/", `<h1>Index of /files/</h1><a href="../">../</a><br><a href="backup-2026.tar.gz">backup-2026.tar.gz</a>`)
	})
	// Weakness: SQL injection (the demo's fictitious CVE-2099-0001).
	mux.HandleFunc("GET /starpipe-demo/vuln", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Query().Get("id"), "'") {
			text(w, http.StatusInternalServerError, "STARPIPE-DEMO-SQL-ERROR: near \"'\": syntax error in SELECT * FROM products WHERE id = '"+"1'"+"'\n")
			return
		}
		page(w, "Product", "<h1>Product 1</h1>")
	})
	// Weakness behind authentication: a debug dump for any token holder.
	mux.HandleFunc("GET /admin/debug", func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" || subtle.ConstantTimeCompare([]byte(got), []byte(bearer)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="demo"`)
			text(w, http.StatusUnauthorized, "unauthorized\n")
			return
		}
		text(w, http.StatusOK, "DEBUG=true\nCACHE=memory\nWORKERS=2\n")
	})
	// The same shop mounted under /app, so that the authenticated example
	// schedule scans a scope of its own.
	root := http.NewServeMux()
	root.Handle("/app/", http.StripPrefix("/app", mux))
	root.Handle("/", mux)
	return withServerHeader(root)
}

// withServerHeader discloses a product version, another classic finding.
func withServerHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "starpipe-demo-shop/1.4.2")
		h.ServeHTTP(w, r)
	})
}

func page(w http.ResponseWriter, title, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>%s</title></head><body>%s</body></html>\n", title, body)
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// Serve runs the demo on addr, which must be a loopback address, until ctx
// ends.
func Serve(ctx context.Context, addr, bearer string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("demo target address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("demo target address %q: the deliberately vulnerable demo serves on loopback only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo target: %w", err)
	}
	srv := &http.Server{Handler: Handler(bearer), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("demo target serving", "component", "demo", "url", "http://"+ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
