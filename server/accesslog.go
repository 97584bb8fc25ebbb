package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/computesdk-go/compute/server/wire"
)

// reqInfo is what handlers add to a request's access-log record.
type reqInfo struct {
	mu      sync.Mutex
	action  string
	sandbox string
	errMsg  string
}

type reqInfoKey struct{}

func annotate(r *http.Request, action, sandbox string) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.mu.Lock()
		if action != "" {
			info.action = action
		}
		if sandbox != "" {
			info.sandbox = sandbox
		}
		info.mu.Unlock()
	}
}

func (s *Server) accessLog(r *http.Request, rw *respWriter, info *reqInfo, start time.Time) {
	level := slog.LevelInfo
	switch {
	case rw.status >= 500:
		level = slog.LevelWarn
	case r.URL.Path == wire.HealthPath && rw.status == http.StatusOK:
		level = slog.LevelDebug // probes every few seconds are noise
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rw.status),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
	}
	info.mu.Lock()
	if info.action != "" {
		attrs = append(attrs, slog.String("action", info.action))
	}
	if info.sandbox != "" {
		attrs = append(attrs, slog.String("sandbox", info.sandbox))
	}
	if info.errMsg != "" {
		attrs = append(attrs, slog.String("error", info.errMsg))
	}
	info.mu.Unlock()
	s.log.LogAttrs(context.WithoutCancel(r.Context()), level, "request", attrs...)
}

// warnings passes on a handler's records of level Warn and above only.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnings{w.Handler.WithAttrs(attrs)}
}

func (w warnings) WithGroup(name string) slog.Handler { return warnings{w.Handler.WithGroup(name)} }
