package modal

import (
	"context"
	"log/slog"
	"os"
	"strings"
)

// defaultLogger is the SDK's own default (text to stderr at
// MODAL_LOGLEVEL, WARN when unset) without the warning it logs on every
// connection to a command router on a loopback address, which only an
// emulator has and which says nothing the user can act on.
func defaultLogger() *slog.Logger {
	level := slog.LevelWarn
	switch strings.ToUpper(os.Getenv("MODAL_LOGLEVEL")) {
	case "DEBUG":
		level = slog.LevelDebug
	case "INFO":
		level = slog.LevelInfo
	case "ERROR":
		level = slog.LevelError
	}
	return slog.New(dropLoopbackTLSWarning{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})})
}

type dropLoopbackTLSWarning struct{ slog.Handler }

func (h dropLoopbackTLSWarning) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "Using insecure TLS") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h dropLoopbackTLSWarning) WithAttrs(attrs []slog.Attr) slog.Handler {
	return dropLoopbackTLSWarning{h.Handler.WithAttrs(attrs)}
}

func (h dropLoopbackTLSWarning) WithGroup(name string) slog.Handler {
	return dropLoopbackTLSWarning{h.Handler.WithGroup(name)}
}
