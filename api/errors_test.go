package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/starpipe/starpipe/api"
	"github.com/starpipe/starpipe/internal/netpolicy"
	"github.com/starpipe/starpipe/internal/testlog"
	"github.com/starpipe/starpipe/scheduler/spec"
	"github.com/starpipe/starpipe/store/storetest"
	"github.com/starpipe/starpipe/vault"
)

// adminAuth lets every request in as an admin without asking the
// database, so that what is tested is the handlers' answer to an outage.
type adminAuth struct{}

func (adminAuth) Authenticate(context.Context, string) (api.Principal, error) {
	return api.Principal{ID: "1", Name: "root", Role: "admin"}, nil
}

// TestDatabaseOutageIs503 takes the database away under a running server:
// every route that needs it answers 503, whichever resource it serves,
// and no answer carries the driver's error text.
func TestDatabaseOutageIs503(t *testing.T) {
	st, _ := storetest.New(t)
	k, err := vault.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := vault.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Logger: testlog.New(t, slog.LevelError+1), Auth: adminAuth{}, Store: st, Keyring: kr,
		// The test schedule aims at loopback, as dev's policy allows.
		SchedulePolicy: spec.Options{Network: netpolicy.New(netpolicy.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})}})

	// The outage: the database refuses new connections and the store's
	// open ones are cut.
	storetest.CutOff(t, st)
	ctx := t.Context()

	cases := []struct{ method, path, body string }{
		{"GET", "/v1/runs", ""},
		{"GET", "/v1/runs/00000000-0000-0000-0000-000000000001", ""},
		{"GET", "/v1/findings", ""},
		{"GET", "/v1/findings/1", ""},
		{"GET", "/v1/controls", ""},
		{"GET", "/v1/schedules", ""},
		{"GET", "/v1/schedules/web", ""},
		{"POST", "/v1/schedules", webSchedule},
		{"DELETE", "/v1/schedules/web", ""},
		{"GET", "/v1/credentials", ""},
		{"GET", "/v1/credentials/x", ""},
		{"DELETE", "/v1/credentials/x", ""},
		{"POST", "/v1/credentials", `{"name":"x","kind":"bearer","secret":"s3cret-value","targets":["https://app.example.com/"]}`},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req := httptest.NewRequestWithContext(ctx, tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer any")
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503; body %s", rec.Code, rec.Body)
			}
			if b := rec.Body.String(); !strings.Contains(b, `"error":"unavailable"`) || strings.Contains(b, "SQLSTATE") {
				t.Fatalf("body %s", b)
			}
		})
	}
}
