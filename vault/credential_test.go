package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const clearText = "s3cr3t-Value"

// TestSecretNeverPrinted checks every formatting path the daemon might hit.
func TestSecretNeverPrinted(t *testing.T) {
	sec := Secret(clearText)
	c := Credential{ID: "c1", Name: "api", Kind: KindBearer, Secret: sec}
	pc := &c
	type wrapper struct {
		Cred  Credential
		Creds []Credential
		ByID  map[string]Secret
	}
	w := wrapper{Cred: c, Creds: []Credential{c}, ByID: map[string]Secret{"x": sec}}

	var outs []string
	for _, v := range []any{sec, c, pc, w, []Secret{sec}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		outs = append(outs, fmt.Sprint(v), fmt.Sprintln(v))
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j))
		outs = append(outs, fmt.Errorf("wrapped: %v", v).Error())
	}
	outs = append(outs, sec.String(), sec.GoString())
	mk, _ := json.Marshal(map[string]any{"k": sec})
	outs = append(outs, string(mk))

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("credential", "secret", sec, "cred", c, "ptr", pc)
		l.Info("grouped", slog.Group("g", slog.Any("secret", sec)), slog.Any("any", sec))
		l.With("secret", sec).Info("with")
	}
	outs = append(outs, buf.String())

	for _, out := range outs {
		if strings.Contains(out, clearText) || strings.Contains(out, fmt.Sprint([]byte(clearText))) ||
			strings.Contains(out, fmt.Sprintf("%x", clearText)) || strings.Contains(out, "czNjcjN0") /* base64 */ {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if !strings.Contains(buf.String(), Redacted) {
		t.Fatalf("slog output lacks %s: %s", Redacted, buf.String())
	}
	if j, _ := json.Marshal(c); !strings.Contains(string(j), `"secret":"[REDACTED]"`) {
		t.Fatalf("credential JSON = %s", j)
	}
	if sec.Reveal() != clearText {
		t.Fatal("Reveal lost the secret")
	}
}

func TestSecretUnmarshal(t *testing.T) {
	var c Credential
	in := `{"id":"c1","name":"api","kind":"basic","username":"scanner","secret":"pa ss"}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.Secret.Reveal() != "pa ss" || c.Username != "scanner" || c.Kind != KindBasic {
		t.Fatalf("decoded %#v", c)
	}
	err := json.Unmarshal([]byte(`{"secret":"[REDACTED]"}`), &c)
	if err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("placeholder accepted: %v", err)
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		c    Credential
		want []string
	}{
		{"bearer", Credential{Name: "n", Kind: KindBearer, Secret: Secret("abc.def-ghi")},
			[]string{"Authorization: Bearer abc.def-ghi"}},
		{"basic", Credential{Name: "n", Kind: KindBasic, Username: "Aladdin", Secret: Secret("open sesame")},
			[]string{"Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="}},
		{"basic empty password", Credential{Name: "n", Kind: KindBasic, Username: "u"},
			[]string{"Authorization: Basic dTo="}},
		{"basic password with CRLF is encoded, not injected", Credential{Name: "n", Kind: KindBasic, Username: "u", Secret: Secret("a\r\nb")},
			[]string{"Authorization: Basic dTphDQpi"}},
		{"header", Credential{Name: "n", Kind: KindHeader, HeaderName: "X-API-Key", Secret: Secret("k1")},
			[]string{"X-API-Key: k1"}},
		{"cookie", Credential{Name: "n", Kind: KindCookie, Secret: Secret("session=abc; csrf=def")},
			[]string{"Cookie: session=abc; csrf=def"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Headers()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Fatalf("Headers = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHeadersInvalid(t *testing.T) {
	tests := []struct {
		name         string
		c            Credential
		field, words string
	}{
		{"no name", Credential{Kind: KindBearer, Secret: Secret("t")}, "name", "required"},
		{"bad kind", Credential{Name: "n", Kind: "oauth", Secret: Secret("t")}, "kind", "invalid credential kind"},
		{"empty bearer", Credential{Name: "n", Kind: KindBearer}, "secret", "bearer token is required"},
		{"bearer LF", Credential{Name: "n", Kind: KindBearer, Secret: Secret("t\nX-Evil: 1")}, "secret", "CR or LF"},
		{"bearer CR", Credential{Name: "n", Kind: KindBearer, Secret: Secret("t\r")}, "secret", "CR or LF"},
		{"bearer space", Credential{Name: "n", Kind: KindBearer, Secret: Secret("tok en")}, "secret", "white space"},
		{"bearer NUL", Credential{Name: "n", Kind: KindBearer, Secret: Secret("a\x00")}, "secret", "control character"},
		{"basic no user", Credential{Name: "n", Kind: KindBasic, Secret: Secret("p")}, "username", "required"},
		{"basic colon", Credential{Name: "n", Kind: KindBasic, Username: "a:b", Secret: Secret("p")}, "username", "':'"},
		{"basic user LF", Credential{Name: "n", Kind: KindBasic, Username: "a\nb", Secret: Secret("p")}, "username", "CR or LF"},
		{"header bad name", Credential{Name: "n", Kind: KindHeader, HeaderName: "X Key", Secret: Secret("v")}, "header_name", "not a valid header name"},
		{"header name with colon", Credential{Name: "n", Kind: KindHeader, HeaderName: "X-Key:", Secret: Secret("v")}, "header_name", "not a valid header name"},
		{"header name CRLF", Credential{Name: "n", Kind: KindHeader, HeaderName: "X\r\nY", Secret: Secret("v")}, "header_name", "not a valid header name"},
		{"header empty name", Credential{Name: "n", Kind: KindHeader, Secret: Secret("v")}, "header_name", "not a valid header name"},
		{"header Host", Credential{Name: "n", Kind: KindHeader, HeaderName: "host", Secret: Secret("v")}, "header_name", "framing or routing"},
		{"header value CRLF", Credential{Name: "n", Kind: KindHeader, HeaderName: "X-K", Secret: Secret("v\r\nHost: evil")}, "secret", "CR or LF"},
		{"header empty value", Credential{Name: "n", Kind: KindHeader, HeaderName: "X-K"}, "secret", "required"},
		{"cookie no pair", Credential{Name: "n", Kind: KindCookie, Secret: Secret("abc")}, "secret", "name=value"},
		{"cookie LF", Credential{Name: "n", Kind: KindCookie, Secret: Secret("a=b\n")}, "secret", "CR or LF"},
		{"username on bearer", Credential{Name: "n", Kind: KindBearer, Username: "u", Secret: Secret("t")}, "username", "only basic"},
		{"header name on cookie", Credential{Name: "n", Kind: KindCookie, HeaderName: "X", Secret: Secret("a=b")}, "header_name", "only header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := tt.c.Headers()
			var ce *CredentialError
			if !errors.As(err, &ce) {
				t.Fatalf("Headers = %q, %v; want *CredentialError", h, err)
			}
			if ce.Field != tt.field || !strings.Contains(ce.Reason, tt.words) {
				t.Fatalf("error %v: field %q reason %q, want field %q with %q", err, ce.Field, ce.Reason, tt.field, tt.words)
			}
			if len(tt.c.Secret) > 1 && strings.Contains(err.Error(), string(tt.c.Secret)) {
				t.Fatalf("error %q contains the secret", err)
			}
		})
	}
}
