package remote_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// refusing is a provider whose Create fails with err. It implements only
// what the server calls in this test: any other call panics on the nil
// provider it embeds.
type refusing struct {
	driver.Provider
	err error
}

func (p refusing) Name() string { return "refusing" }

func (p refusing) Create(context.Context, *compute.CreateOptions) (driver.Sandbox, error) {
	return nil, p.err
}

// TestProviderCredentialErrors checks that the server's provider refusing
// its credentials, or having none, reaches a remote client as the same
// error (compute.ErrAuthentication, compute.ErrMissingCredentials), with
// the provider's message, not as an internal error.
func TestProviderCredentialErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sentinel error
		code     string
	}{
		{compute.ErrAuthentication, wire.CodeProviderAuthentication},
		{compute.ErrMissingCredentials, wire.CodeMissingCredentials},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			perr := fmt.Errorf("modal: token rejected by the fake: %w", tc.sentinel)
			srv := server.New(refusing{err: perr}, server.Options{IdleTimeout: -1, Logger: slog.New(slog.DiscardHandler)})
			defer srv.Close()
			ts := httptest.NewServer(srv)
			defer ts.Close()
			rp := remote.New(ts.URL, "")
			defer rp.Close()

			_, err := compute.New(compute.Config{Provider: rp, NoFallback: true}).Create(t.Context(), nil)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("Create = %v; want an error matching %v", err, tc.sentinel)
			}
			for _, other := range []error{compute.ErrAuthentication, compute.ErrMissingCredentials} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Errorf("Create = %v; it matches %v too", err, other)
				}
			}
			var re *remote.Error
			if !errors.As(err, &re) || re.StatusCode != 500 || re.Code != tc.code {
				t.Errorf("Create = %#v; want a *remote.Error with status 500, code %q", re, tc.code)
			}
			if !strings.Contains(err.Error(), "token rejected by the fake") {
				t.Errorf("Create = %v; want the provider's message", err)
			}
		})
	}
}
