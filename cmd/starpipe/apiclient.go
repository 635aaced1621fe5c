package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// clientFlags are how a command reaches the daemon's HTTP API: the same
// rules as `starpipe ingest --server` (https, or plain http only to a
// loopback host unless --insecure; the token from --token, --token-file or
// STARPIPE_TOKEN).
type clientFlags struct {
	server, token, tokenFile, caFile string
	insecure                         bool
}

func (c *clientFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.server, "server", "", "daemon URL, e.g. https://starpipe.example.com (default: $STARPIPE_SERVER)")
	f.StringVar(&c.token, "token", "", "API token (default: --token-file, then $STARPIPE_TOKEN)")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding the API token")
	f.BoolVar(&c.insecure, "insecure", false, "allow --server over plain http to a host that is not loopback (the token travels in clear)")
	f.StringVar(&c.caFile, "ca-file", "", "PEM CA that signed the daemon's certificate, for an https --server with a private CA")
}

// client checks the flags and returns a client for the API.
func (c *clientFlags) client() (*apiClient, error) {
	server := c.server
	if server == "" {
		server = os.Getenv("STARPIPE_SERVER")
	}
	if server == "" {
		return nil, errors.New("--server (or STARPIPE_SERVER) is required: the daemon's URL")
	}
	tok := c.token
	if tok == "" && c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		tok = os.Getenv("STARPIPE_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("an API token is required: --token, --token-file or STARPIPE_TOKEN")
	}
	hs, err := newHTTPSubmitter(server, tok, c.insecure, c.caFile)
	if err != nil {
		return nil, err
	}
	return &apiClient{h: hs}, nil
}

// apiClient sends JSON requests to the daemon with the bearer token.
type apiClient struct{ h *httpSubmitter }

// apiError is an answer with a status of 300 or more.
type apiError struct {
	Status  int
	Code    string // the body's "error"
	Message string // the body's "message"
}

func (e *apiError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// maxAnswer bounds what is read of an answer.
const maxAnswer = 64 << 20

// call sends in (nil for no body) as JSON and decodes the answer into out
// (nil to ignore it). An answer of 300 or more is an *apiError.
func (c *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.h.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.h.token)
	resp, err := c.h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		var b struct{ Error, Message string }
		if json.Unmarshal(raw, &b) == nil {
			e.Code, e.Message = b.Error, b.Message
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}
