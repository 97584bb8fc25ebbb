package wire

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"testing"

	"github.com/computesdk-go/compute"
)

// TestCodeErr checks that Err inverts Code for every error that has a
// code, and that every code has its status.
func TestCodeErr(t *testing.T) {
	for _, want := range []error{
		compute.ErrNotFound, compute.ErrStopped, compute.ErrCommandNotFound, compute.ErrOutOfMemory,
		compute.ErrTimeout, compute.ErrUnsupported, compute.ErrQuotaExceeded, compute.ErrAuthentication,
		compute.ErrMissingCredentials, compute.ErrContextDied, fs.ErrNotExist, fs.ErrExist, fs.ErrPermission,
	} {
		err := fmt.Errorf("provider: %w", want)
		code := Code(err)
		if code == "" || code == CodeInternal {
			t.Errorf("Code(%v) = %q; want the code of %v", err, code, want)
			continue
		}
		if got := Err(code, Status(code)); got != want {
			t.Errorf("Err(%q, %d) = %v; want %v", code, Status(code), got, want)
		}
		if got := Err(code, 0); got != want {
			t.Errorf("Err(%q, 0) (an exec stream's event) = %v; want %v", code, got, want)
		}
	}
	if code := Code(errors.New("anything else")); code != "" {
		t.Errorf("Code(another error) = %q; want \"\"", code)
	}
	if code := Code(compute.ErrAuthentication); code != CodeProviderAuthentication {
		t.Errorf("Code(ErrAuthentication) = %q; want %q: the server's own refusal is CodeUnauthorized", code, CodeProviderAuthentication)
	}
	if got := Err(CodeUnauthorized, http.StatusUnauthorized); got != compute.ErrAuthentication {
		t.Errorf("Err(CodeUnauthorized, 401) = %v; want compute.ErrAuthentication", got)
	}
	// A code context that is not there is not found, as a sandbox; and an
	// interpreter that died past its cell's timeout is a died context.
	if got := Err(CodeContextNotFound, http.StatusNotFound); got != compute.ErrNotFound {
		t.Errorf("Err(CodeContextNotFound, 404) = %v; want compute.ErrNotFound", got)
	}
	if code := Code(fmt.Errorf("died: %w (past its timeout: %w)", compute.ErrContextDied, compute.ErrTimeout)); code != CodeContextDied {
		t.Errorf("Code(died and timed out) = %q; want %q", code, CodeContextDied)
	}
	for code, status := range statuses {
		if Status(code) != status || status < 400 {
			t.Errorf("Status(%q) = %d", code, Status(code))
		}
	}
	for _, k := range kinds {
		if _, ok := statuses[k.code]; !ok {
			t.Errorf("code %q has an error but no status", k.code)
		}
	}
}

// TestErrByStatus checks how a reply without a known code is read: by
// its status, as a proxy's reply.
func TestErrByStatus(t *testing.T) {
	for _, tc := range []struct {
		code   string
		status int
		want   error
	}{
		{"", 404, compute.ErrNotFound},
		{"", 401, compute.ErrAuthentication},
		{"", 429, compute.ErrQuotaExceeded},
		{"", 501, compute.ErrUnsupported},
		{"", 504, compute.ErrTimeout},
		{"", 500, nil},
		{"", 502, nil},
		{"newer_code", 404, nil},
		{"newer_code", 429, compute.ErrQuotaExceeded},
		{CodeProcessNotFound, 404, nil},
		{CodeInternal, 500, nil},
		{CodeForbidden, 403, nil},
	} {
		if got := Err(tc.code, tc.status); got != tc.want {
			t.Errorf("Err(%q, %d) = %v; want %v", tc.code, tc.status, got, tc.want)
		}
	}
}
