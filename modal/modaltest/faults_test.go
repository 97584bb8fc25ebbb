package modaltest_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestFaultUnavailableIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	h.srv.Inject("SandboxCreateV2", modaltest.Fault{Code: codes.Unavailable, Times: 2})
	h.create(nil)
	if n := h.srv.CallCount("SandboxCreateV2"); n != 3 {
		t.Errorf("SandboxCreateV2 calls = %d, want 3 (two failures, then success)", n)
	}
	calls := h.srv.Calls()
	var keys []string
	for _, c := range calls {
		if c.Method == "SandboxCreateV2" {
			keys = append(keys, c.IdempotencyKey)
		}
	}
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("retries carry idempotency keys %q, want one key", keys)
	}
}

func TestFaultLostResponseCreatesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	h.srv.Inject("SandboxCreateV2", modaltest.Fault{Code: codes.Unavailable, AfterHandler: true, Times: 1})
	sb := h.create(nil)
	if n := len(h.srv.Sandboxes()); n != 1 {
		t.Errorf("%d sandboxes exist after a retried create, want 1", n)
	}
	if recs := h.srv.Sandboxes(); len(recs) == 1 && recs[0].ID != sb.SandboxID {
		t.Errorf("the retry answered %s, the server made %s", sb.SandboxID, recs[0].ID)
	}
}

func TestFaultPermanent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	remove := h.srv.Inject("SandboxCreateV2", modaltest.Fault{Code: codes.PermissionDenied, Message: "no sandboxes for you"})
	_, err := h.client.Sandboxes.Create(h.ctx, h.app, h.image, nil)
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "no sandboxes for you" {
		t.Errorf("create with an injected PermissionDenied: %v", err)
	}
	remove()
	h.create(nil)
}

func TestFaultThrottle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	h.srv.Inject("SandboxTagsGetV2", modaltest.Fault{RetryAfter: 200 * time.Millisecond, Times: 1})
	sb := h.create(nil)
	start := time.Now()
	if _, err := sb.GetTags(h.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("GetTags returned after %v: the SDK did not wait out the throttle", d)
	}
	if n := h.srv.CallCount("SandboxTagsGetV2"); n != 2 {
		t.Errorf("SandboxTagsGetV2 calls = %d, want 2", n)
	}
}

func TestFaultFractionAndDelay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	// Every call of the method is delayed; none fails.
	h.srv.Inject("SandboxTagsGetV2", modaltest.Fault{Delay: 50 * time.Millisecond, MaxDelay: 60 * time.Millisecond})
	start := time.Now()
	if _, err := sb.GetTags(h.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("a delayed call took %v", d)
	}
	// A fraction of 1 fails every call: the SDK gives up after its retries.
	h.srv.Inject("SandboxTagsSetV2", modaltest.Fault{Code: codes.Internal, Fraction: 1})
	if err := sb.SetTags(h.ctx, map[string]string{"a": "b"}, nil); status.Code(err) != codes.Internal {
		t.Errorf("SetTags with every call failing: %v", err)
	}
	if n := h.srv.CallCount("SandboxTagsSetV2"); n != 4 {
		t.Errorf("SandboxTagsSetV2 calls = %d, want 4 (the SDK's 3 retries)", n)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{Latency: 30 * time.Millisecond})
	sb := h.create(nil)
	h.srv.ResetCalls()
	h.run(sb, []string{"true"}, nil)
	for _, c := range h.srv.Calls() {
		if c.Duration < 30*time.Millisecond {
			t.Errorf("%s took %v with 30ms of latency", c.Method, c.Duration)
		}
	}
}
