package modaltest

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The gRPC services the server implements.
const (
	ControlPlaneService = "modal.client.ModalClient"
	RouterService       = "modal.task_command_router.TaskCommandRouter"
)

// Call is one RPC the server received.
type Call struct {
	// Service is ControlPlaneService or RouterService.
	Service string
	// Method is the RPC's name ("SandboxCreateV2", "TaskExecStart").
	Method string
	// Stream is true for streaming RPCs.
	Stream bool
	// Start is when it arrived; Duration how long it took, zero while it
	// is in progress.
	Start    time.Time
	Duration time.Duration
	// Code is the status it ended with (OK while in progress).
	Code codes.Code
	// IdempotencyKey is the SDK's x-idempotency-key, the same for all
	// retries of one call; RetryAttempt its x-retry-attempt.
	IdempotencyKey string
	RetryAttempt   string
}

// Calls returns every RPC received so far, in the order they arrived.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = *c
	}
	return out
}

// CallCount returns how many RPCs named method ("SandboxCreateV2") the
// server has received; "" counts them all.
func (s *Server) CallCount(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			n++
		}
	}
	return n
}

// ResetCalls forgets the RPCs received so far.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	service, method, _ = strings.Cut(full, "/")
	return service, method
}

func firstMD(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Server) record(ctx context.Context, full string, stream bool) *Call {
	service, method := splitMethod(full)
	md, _ := metadata.FromIncomingContext(ctx)
	c := &Call{
		Service: service, Method: method, Stream: stream, Start: time.Now(),
		IdempotencyKey: firstMD(md, "x-idempotency-key"),
		RetryAttempt:   firstMD(md, "x-retry-attempt"),
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	if max := s.opts.MaxCalls; len(s.calls) > 2*max {
		s.calls = append([]*Call(nil), s.calls[len(s.calls)-max:]...)
	}
	s.mu.Unlock()
	return c
}

func (s *Server) done(c *Call, err error) {
	s.mu.Lock()
	c.Duration = time.Since(c.Start)
	c.Code = status.Code(err)
	s.mu.Unlock()
}

// sleep waits for d or ctx.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	call := s.record(ctx, info.FullMethod, false)
	defer func() { s.done(call, err) }()
	if err := sleep(ctx, s.opts.Latency); err != nil {
		return nil, err
	}
	rule, err := s.faults.before(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	service, method := splitMethod(info.FullMethod)
	if ctx, err = s.authenticate(ctx, service, method, false); err != nil {
		return nil, err
	}
	key := ""
	if service == ControlPlaneService {
		md, _ := metadata.FromIncomingContext(ctx)
		if k := firstMD(md, "x-idempotency-key"); k != "" {
			key = method + "\x00" + k
			if cached, ok := s.idem.get(key); ok {
				return cached, rule.after()
			}
		}
	}
	resp, err = handler(ctx, req)
	if err == nil && key != "" {
		if m, ok := resp.(proto.Message); ok {
			s.idem.put(key, m)
		}
	}
	if err == nil {
		err = rule.after()
		if err != nil {
			resp = nil
		}
	}
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	ctx := ss.Context()
	call := s.record(ctx, info.FullMethod, true)
	defer func() { s.done(call, err) }()
	if err := sleep(ctx, s.opts.Latency); err != nil {
		return err
	}
	rule, err := s.faults.before(ctx, info.FullMethod)
	if err != nil {
		return err
	}
	service, method := splitMethod(info.FullMethod)
	if ctx, err = s.authenticate(ctx, service, method, true); err != nil {
		return err
	}
	ws := &wrappedStream{ServerStream: ss, ctx: ctx}
	if rule != nil && rule.f.BreakAfterBytes > 0 {
		ws.breaker = rule
		ws.budget = rule.f.BreakAfterBytes
	}
	if err := handler(srv, ws); err != nil {
		return err
	}
	return rule.after()
}

// wrappedStream carries the authenticated context and breaks the stream
// after a byte budget when a fault asks for it.
type wrappedStream struct {
	grpc.ServerStream
	ctx     context.Context
	breaker *faultRule
	mu      sync.Mutex
	budget  int
	broken  bool
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// take spends up to n bytes of the budget and returns how many may pass,
// and whether the stream breaks after them.
func (w *wrappedStream) take(n int) (allowed int, breakNow bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return 0, true
	}
	if n < w.budget {
		w.budget -= n
		return n, false
	}
	allowed = w.budget
	w.budget = 0
	w.broken = true
	return allowed, true
}

func (w *wrappedStream) SendMsg(m any) error {
	if w.breaker == nil {
		return w.ServerStream.SendMsg(m)
	}
	data, set := payload(m)
	if set == nil {
		return w.ServerStream.SendMsg(m)
	}
	allowed, brk := w.take(len(data))
	if allowed > 0 {
		set(data[:allowed])
		if err := w.ServerStream.SendMsg(m); err != nil {
			return err
		}
	}
	if brk {
		return w.breaker.breakErr()
	}
	return nil
}

func (w *wrappedStream) RecvMsg(m any) error {
	if w.breaker == nil {
		return w.ServerStream.RecvMsg(m)
	}
	w.mu.Lock()
	broken := w.broken
	w.mu.Unlock()
	if broken {
		return w.breaker.breakErr()
	}
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	data, set := payload(m)
	if set == nil {
		return nil
	}
	allowed, brk := w.take(len(data))
	if brk && allowed == 0 {
		return w.breaker.breakErr()
	}
	set(data[:allowed])
	return nil
}

// idempotencyCache remembers successful control-plane responses by the
// SDK's x-idempotency-key, so that a retried call (after a lost response)
// does not do its work twice.
type idempotencyCache struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string]proto.Message
}

func newIdempotencyCache(max int) *idempotencyCache {
	return &idempotencyCache{max: max, m: map[string]proto.Message{}}
}

func (c *idempotencyCache) get(key string) (proto.Message, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[key]
	if !ok {
		return nil, false
	}
	return proto.Clone(m), true
}

func (c *idempotencyCache) put(key string, m proto.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		return
	}
	c.m[key] = proto.Clone(m)
	c.order = append(c.order, key)
	if len(c.order) > c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}
