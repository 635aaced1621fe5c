package api

import (
	"context"
	"errors"
	"testing"

	"github.com/starpipe/starpipe/store"
	"github.com/starpipe/starpipe/store/storetest"
)

// TestMain lets storetest drop its template database and stop the private
// PostgreSQL it may have started, once every test of the package is done.
func TestMain(m *testing.M) { storetest.Main(m) }

// storeAuthenticator adapts store tokens to Authenticator the way
// cmd/starpipe wires them, so that tests authenticate with real tokens from
// store.CreateToken.
type storeAuthenticator struct{ st *store.Store }

func (a storeAuthenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	p, err := a.st.Authenticate(ctx, token)
	if errors.Is(err, store.ErrUnauthenticated) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{ID: p.ID, Name: p.Actor(), Role: p.Role, User: p.User, Scopes: p.Scopes, Kinds: p.Kinds}, nil
}
