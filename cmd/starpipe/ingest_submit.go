package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/bus"
	"github.com/starpipe/starpipe/finding"
	"github.com/starpipe/starpipe/ingest/pipeline"
	"github.com/starpipe/starpipe/internal/tlsconfig"
	"github.com/starpipe/starpipe/relay"
	"github.com/starpipe/starpipe/store"
)

// runSubmit is `starpipe ingest` without --dry-run.
func runSubmit(cmd *cobra.Command, files []string, fl ingestFlags) error {
	if strings.TrimSpace(fl.scope) == "" {
		return errors.New("--scope is required: what was scanned (a host, a URL base or a repository)")
	}
	var sub submitter
	if fl.server != "" {
		tok := fl.token
		if tok == "" {
			tok = os.Getenv("STARPIPE_TOKEN")
		}
		if tok == "" {
			return errors.New("--server needs --token or STARPIPE_TOKEN")
		}
		hs, err := newHTTPSubmitter(fl.server, tok, fl.insecure, fl.caFile)
		if err != nil {
			return err
		}
		sub = hs
	} else {
		d, err := newDirectSubmitter(cmd.Context(), fl.cfgFile)
		if err != nil {
			return err
		}
		defer d.close()
		sub = d
	}
	out := cmd.OutOrStdout()
	failed := false
	for _, file := range files {
		id, err := submitFile(cmd.Context(), sub, file, fl)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "starpipe: %s: %v\n", file, err)
			failed = true
			continue
		}
		if !fl.wait {
			fmt.Fprintf(out, "%s\t%s\n", file, id)
			continue
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), fl.timeout)
		summary, status, err := waitRun(ctx, sub, id)
		cancel()
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "starpipe: %s: run %s: %v\n", file, id, err)
			failed = true
			continue
		}
		fmt.Fprintf(out, "%s\n", summary)
		if status == finding.RunHeld {
			fmt.Fprintf(cmd.ErrOrStderr(), "starpipe: %s: run %s is held: it would resolve too many of the scope's open findings at once; an operator releases (POST /v1/runs/%s/release) or discards it\n", file, id, id)
		}
		if status != finding.RunSucceeded {
			failed = true
		}
	}
	if failed {
		return exitError{code: 1}
	}
	return nil
}

func submitFile(ctx context.Context, sub submitter, file string, fl ingestFlags) (string, error) {
	var r io.Reader
	name := filepath.Base(file)
	if file == "-" {
		r, name = os.Stdin, "stdin"
	} else {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	return sub.submit(ctx, r, pipeline.Request{
		Kind: fl.kind, Scope: fl.scope, Format: fl.format, ScheduleID: fl.schedule, FileName: name,
	})
}

// submitter stores a file as a run and reports run status.
type submitter interface {
	submit(ctx context.Context, r io.Reader, req pipeline.Request) (string, error)
	// run returns the run's JSON and its status.
	run(ctx context.Context, id string) ([]byte, finding.RunStatus, error)
}

func waitRun(ctx context.Context, sub submitter, id string) ([]byte, finding.RunStatus, error) {
	for {
		body, status, err := sub.run(ctx, id)
		if err != nil {
			return nil, "", err
		}
		// A held run waits for a person, not for the pipeline.
		if status.Finished() {
			return body, status, nil
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("still %s when --timeout ran out", status)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// newHTTPSubmitter checks where the token would go before anything is
// sent: plain http only to a loopback host, unless insecure. caFile, when
// set, is the CA that signed the daemon's certificate (http.tls).
func newHTTPSubmitter(server, token string, insecure bool, caFile string) (*httpSubmitter, error) {
	base, err := checkServerURL(server, insecure)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		tc, err := tlsconfig.Client(tlsconfig.ClientOptions{CAFile: caFile})
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	client := &http.Client{
		Transport: tr,
		// No overall timeout: an upload of several GB takes its time;
		// the context and the server's body read timeout bound stalls.
		Timeout: 0,
		// A redirect must not carry the token somewhere --server would
		// have been refused for.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if _, err := checkServerURL(req.URL.String(), insecure); err != nil {
				return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
			}
			return nil
		},
	}
	return &httpSubmitter{base: base, token: token, client: client}, nil
}

// checkServerURL validates --server and returns it without a trailing
// slash. The token is a bearer credential: over plain http anyone on the
// path can read it and act as its owner, so http is accepted only for
// loopback hosts unless insecure says the network is trusted.
func checkServerURL(raw string, insecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--server %q: %w", raw, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("--server %q: want a URL such as https://starpipe.example.com or http://127.0.0.1:8080", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("--server %s: credentials belong in --token or STARPIPE_TOKEN, not in the URL", u.Redacted())
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure && !isLoopbackHost(u.Hostname()) {
			return "", fmt.Errorf("--server %s: refusing to send the API token over plain http to %s, which is not a loopback address; "+
				"use https:// (the daemon's http.tls), or --insecure if the network between here and there is trusted", u.Redacted(), u.Hostname())
		}
	default:
		return "", fmt.Errorf("--server %s: scheme %q, want https or http", u.Redacted(), u.Scheme)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// isLoopbackHost reports whether host names this machine without a DNS
// lookup: localhost or a loopback IP. A name that merely resolves to
// 127.0.0.1 today is not trusted; DNS can change its answer.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type httpSubmitter struct {
	base, token string
	client      *http.Client
}

func (h *httpSubmitter) do(req *http.Request) ([]byte, error) {
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Message)
		}
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return body, nil
}

func (h *httpSubmitter) submit(ctx context.Context, r io.Reader, pr pipeline.Request) (string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": pr.Kind, "scope": pr.Scope, "format": pr.Format, "schedule": pr.ScheduleID, "filename": pr.FileName} {
		if v != "" {
			q.Set(k, v)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/v1/runs?"+q.Encode(), r)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	body, err := h.do(req)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	var res struct{ ID string }
	if err := json.Unmarshal(body, &res); err != nil || res.ID == "" {
		return "", fmt.Errorf("upload: unexpected answer %q", body)
	}
	return res.ID, nil
}

func (h *httpSubmitter) run(ctx context.Context, id string) ([]byte, finding.RunStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/v1/runs/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, "", err
	}
	body, err := h.do(req)
	if err != nil {
		return nil, "", err
	}
	var res api.Run
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, "", fmt.Errorf("unexpected answer %q", body)
	}
	return body, res.Status, nil
}

// directSubmitter writes runs straight into the configured database and
// pushes the outbox once; a daemon's relay delivers anything left over.
type directSubmitter struct {
	st   *store.Store
	in   *pipeline.Intake
	rel  *relay.Relay
	prod *bus.Producer
}

func newDirectSubmitter(ctx context.Context, cfgFile string) (*directSubmitter, error) {
	st, cfg, err := openConfiguredStore(ctx, cfgFile)
	if err != nil {
		return nil, fmt.Errorf("without --server, ingest stores runs itself: %w", err)
	}
	if err := store.Migrate(ctx, cfg.Database.URL); err != nil {
		st.Close()
		return nil, err
	}
	d := &directSubmitter{st: st, in: pipeline.NewIntake(st, cfg.Ingest.MaxBytes, nil)}
	if len(cfg.Kafka.Brokers) > 0 {
		bcfg, err := busConfig(cfg)
		if err != nil {
			st.Close()
			return nil, err
		}
		d.prod = bus.NewProducer(bcfg, slog.New(slog.DiscardHandler))
		d.rel = relay.New(st, d.prod, nil)
	}
	return d, nil
}

func (d *directSubmitter) submit(ctx context.Context, r io.Reader, req pipeline.Request) (string, error) {
	id, err := d.in.Submit(ctx, r, req)
	if err != nil {
		return "", err
	}
	if d.rel != nil {
		// Deliver now if the brokers answer; otherwise the row waits in the
		// outbox for a daemon's relay, and the run is still safe.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _ = d.rel.Drain(dctx)
		cancel()
	}
	return id, nil
}

func (d *directSubmitter) run(ctx context.Context, id string) ([]byte, finding.RunStatus, error) {
	in, err := d.st.GetRunInput(ctx, id)
	if err != nil {
		return nil, "", err
	}
	b, _ := json.Marshal(map[string]string{"id": id, "status": string(in.Status), "scope": in.Scope, "kind": in.Kind})
	return b, in.Status, nil
}

func (d *directSubmitter) close() {
	if d.prod != nil {
		d.prod.Close()
	}
	d.st.Close()
}
