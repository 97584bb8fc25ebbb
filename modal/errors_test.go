package modal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal"
	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestMissingCredentials(t *testing.T) {
	t.Parallel()
	srv, err := modaltest.NewServer(modaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// No token in the config, none in the environment (TestMain cleared
	// it), no config file.
	p, err := modal.New(modal.Config{ServerURL: srv.URL, Logger: quiet})
	if err != nil {
		t.Fatalf("New without credentials: %v; want the error at create", err)
	}
	defer p.Close()
	ctx := testContext(t)
	start := time.Now()
	_, err = compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if !errors.Is(err, compute.ErrMissingCredentials) {
		t.Fatalf("Create without credentials: %v; want an error matching compute.ErrMissingCredentials", err)
	}
	for _, want := range []string{"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TokenID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say to set %s", err, want)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Create without credentials took %v; want an error at once, not retries", d)
	}
	if n := srv.CallCount(""); n != 0 {
		t.Errorf("%d calls reached the server without credentials; want none", n)
	}
	if _, err := p.List(ctx); !errors.Is(err, compute.ErrMissingCredentials) {
		t.Errorf("List without credentials: %v; want compute.ErrMissingCredentials", err)
	}
}

func TestBadToken(t *testing.T) {
	t.Parallel()
	srv, p := emulator(t, modaltest.Options{}, modal.Config{TokenID: "ak-wrong", TokenSecret: "as-wrong"})
	ctx := testContext(t)
	_, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if !errors.Is(err, compute.ErrAuthentication) {
		t.Fatalf("Create with a wrong token: %v; want compute.ErrAuthentication", err)
	}
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Errorf("the SDK's error (unwrapped) has code %v; want Unauthenticated", code)
	}
	if !strings.Contains(err.Error(), "MODAL_TOKEN_ID") {
		t.Errorf("error %q does not say what to check", err)
	}
	if n := srv.CallCount("SandboxCreateV2"); n != 0 {
		t.Errorf("SandboxCreateV2 reached the server %d times with a wrong token", n)
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	_, p := emulator(t, modaltest.Options{MaxSandboxes: 1}, modal.Config{})
	ctx := testContext(t)
	c := compute.New(compute.Config{Provider: p})
	sb, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	_, err = c.Create(ctx, nil)
	if !errors.Is(err, compute.ErrQuotaExceeded) {
		t.Fatalf("second Create with a quota of 1: %v; want compute.ErrQuotaExceeded", err)
	}
	var me *modal.Error
	if !errors.As(err, &me) || me.Op != "create" {
		t.Errorf("error %v (%T); want a *modal.Error of op create", err, err)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	sb2, err := c.Create(ctx, nil)
	if err != nil {
		t.Fatalf("Create after freeing the quota: %v", err)
	}
	sb2.Destroy(ctx)
}

func TestUnknownID(t *testing.T) {
	t.Parallel()
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	for _, id := range []string{"sb-01M8AEXBZ46VGKSHCE8HF8WYGY", "sb-abcdefghijklmnopqrstuv", "not-an-id"} {
		_, err := p.Get(ctx, id)
		if !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("Get(%q): %v; want compute.ErrNotFound", id, err)
		}
		if err := p.Destroy(ctx, id); err != nil {
			t.Errorf("Destroy(%q): %v; want nil", id, err)
		}
	}
}

func TestSyntaxError(t *testing.T) {
	t.Parallel()
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	_, err = sb.RunCode(ctx, "print('unclosed'", nil)
	var se *compute.SyntaxError
	if !errors.As(err, &se) || se.Runtime != compute.Python {
		t.Errorf("RunCode of a syntax error: %v; want a *compute.SyntaxError for python", err)
	}
	res, err := sb.RunCode(ctx, "raise ValueError('boom')", nil)
	if err != nil || res.ExitCode != 1 || !strings.Contains(res.Stderr, "ValueError: boom") {
		t.Errorf("RunCode of a runtime error = %+v, %v; want exit 1 with the traceback, no error", res, err)
	}
}

// A sandbox that ended by itself (its timeout) says so, and why.
func TestSandboxDied(t *testing.T) {
	t.Parallel()
	_, p := emulator(t, modaltest.Options{}, modal.Config{})
	ctx := testContext(t)
	sb, err := compute.New(compute.Config{Provider: p}).Create(ctx, &compute.CreateOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	for {
		info, err := sb.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != compute.StatusRunning {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = sb.RunCommand(ctx, "true")
	if !errors.Is(err, compute.ErrStopped) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("RunCommand in a sandbox past its timeout: %v; want compute.ErrStopped saying it reached its timeout", err)
	}
	_, err = sb.FileSystem().ReadFile(ctx, "/etc/hostname")
	if !errors.Is(err, compute.ErrStopped) {
		t.Errorf("ReadFile in a sandbox past its timeout: %v; want compute.ErrStopped", err)
	}
}
