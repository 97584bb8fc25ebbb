package modaltest

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fault is latency or a failure injected into the RPCs of one method, to
// test how clients cope with a slow or failing Modal. A call it applies to
// is delayed by Delay (a random duration in [Delay, MaxDelay] when MaxDelay
// is larger), then fails with Code unless Code is OK.
//
// Which calls it applies to: with Times > 0, only the first Times matching
// calls; with Fraction > 0, each call with that probability; both may be
// combined; with neither, every call.
type Fault struct {
	// Delay and MaxDelay delay the call before it is handled.
	Delay, MaxDelay time.Duration
	// Code is the status the call fails with; OK (the zero value) means
	// no failure, only the delay. A Fault with RetryAfter or
	// BreakAfterBytes and no Code uses ResourceExhausted and Unavailable
	// respectively.
	Code codes.Code
	// Message is the status message ("injected fault" when empty).
	Message string
	// Times limits the fault to the first Times matching calls.
	Times int
	// Fraction applies the fault to each call with this probability.
	Fraction float64
	// RetryAfter attaches Modal's throttling detail (RPCRetryPolicy), which
	// makes the SDK wait this long and retry without counting an attempt.
	RetryAfter time.Duration
	// AfterHandler runs the call's handler first and replaces its response
	// with the failure: the work is done, the answer is lost.
	AfterHandler bool
	// BreakAfterBytes breaks a stream (stdout/stderr reads, log streams,
	// the stdin write stream) with Code once this many bytes of data have
	// passed; the call itself runs normally until then.
	BreakAfterBytes int
}

// faultSet holds the injected faults.
type faultSet struct {
	mu    sync.Mutex
	rules []*faultRule
}

type faultRule struct {
	method string // full method, short method or "*"
	f      Fault
	mu     sync.Mutex
	hits   int
}

// Inject adds a fault for method: the RPC's name ("SandboxCreateV2"), its
// full name ("/modal.client.ModalClient/SandboxCreateV2"), or "*" for
// every RPC. When several faults match a call, the first one added that
// applies wins. The returned function removes the fault.
func (s *Server) Inject(method string, f Fault) (remove func()) {
	if f.Code == codes.OK {
		switch {
		case f.RetryAfter > 0:
			f.Code = codes.ResourceExhausted
		case f.BreakAfterBytes > 0:
			f.Code = codes.Unavailable
		}
	}
	r := &faultRule{method: method, f: f}
	s.faults.mu.Lock()
	s.faults.rules = append(s.faults.rules, r)
	s.faults.mu.Unlock()
	return func() {
		s.faults.mu.Lock()
		defer s.faults.mu.Unlock()
		for i, x := range s.faults.rules {
			if x == r {
				s.faults.rules = append(s.faults.rules[:i], s.faults.rules[i+1:]...)
				return
			}
		}
	}
}

func (r *faultRule) matches(full string) bool {
	if r.method == "*" || r.method == full {
		return true
	}
	_, m := splitMethod(full)
	return r.method == m || strings.TrimPrefix(r.method, "/") == strings.TrimPrefix(full, "/")
}

// claim decides whether the rule applies to this call, counting it.
func (r *faultRule) claim() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f.Times > 0 && r.hits >= r.f.Times {
		return false
	}
	if r.f.Fraction > 0 && rand.Float64() >= r.f.Fraction {
		return false
	}
	r.hits++
	return true
}

// before applies the delay and, unless the failure comes after the
// handler or as a broken stream, the failure. The rule is returned so
// that those can be applied later.
func (fs *faultSet) before(ctx context.Context, full string) (*faultRule, error) {
	fs.mu.Lock()
	var rule *faultRule
	for _, r := range fs.rules {
		if r.matches(full) && r.claim() {
			rule = r
			break
		}
	}
	fs.mu.Unlock()
	if rule == nil {
		return nil, nil
	}
	d := rule.f.Delay
	if rule.f.MaxDelay > d {
		d += rand.N(rule.f.MaxDelay - d + 1)
	}
	if err := sleep(ctx, d); err != nil {
		return nil, err
	}
	if rule.f.Code != codes.OK && !rule.f.AfterHandler && rule.f.BreakAfterBytes == 0 {
		return nil, rule.err()
	}
	return rule, nil
}

// after is the failure of an AfterHandler fault (nil otherwise).
func (r *faultRule) after() error {
	if r == nil || !r.f.AfterHandler || r.f.Code == codes.OK || r.f.BreakAfterBytes > 0 {
		return nil
	}
	return r.err()
}

func (r *faultRule) breakErr() error { return r.err() }

func (r *faultRule) err() error {
	msg := r.f.Message
	if msg == "" {
		msg = "injected fault"
	}
	st := status.New(r.f.Code, msg)
	if r.f.RetryAfter > 0 {
		if d, err := st.WithDetails(pb.RPCRetryPolicy_builder{RetryAfterSecs: float32(r.f.RetryAfter.Seconds())}.Build()); err == nil {
			st = d
		}
	}
	return st.Err()
}

// payload returns the data bytes of a stdio or stdin message and a setter
// for them, for BreakAfterBytes; nil setter for other messages.
func payload(m any) ([]byte, func([]byte)) {
	switch m := m.(type) {
	case *pb.TaskExecStdioReadResponse:
		return m.GetData(), m.SetData
	case *pb.SandboxStdioReadV2Response:
		return m.GetData(), m.SetData
	case *pb.TaskExecStdinWriteStreamRequest:
		if m.WhichPayload() == pb.TaskExecStdinWriteStreamRequest_Data_case {
			return m.GetData(), m.SetData
		}
	case *pb.TaskLogsBatch:
		if items := m.GetItems(); len(items) == 1 {
			it := items[0]
			return []byte(it.GetData()), func(b []byte) { it.SetData(string(b)) }
		}
	}
	return nil, nil
}
