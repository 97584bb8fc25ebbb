package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server/wire"
)

// TestTerminalPings checks the keep-alive of a terminal's socket: an idle
// socket is pinged (so that proxies keep it open), and the pings do not
// count as use: the terminal is still closed for being idle.
//
// Not parallel: it shortens termPingEvery, which the parallel tests read
// once this one is over.
func TestTerminalPings(t *testing.T) {
	defer func(d time.Duration) { termPingEvery = d }(termPingEvery)
	termPingEvery = 50 * time.Millisecond
	p, err := local.New(local.Options{})
	if err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	defer p.Close()
	const idle = 1500 * time.Millisecond
	s := New(p, Options{RequestTimeout: idle, Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	e, err := s.create(t.Context(), &compute.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sb := e.sb

	var pings atomic.Int32
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	q := url.Values{wire.TerminalArg: {"/bin/cat"}}
	start := time.Now()
	c, _, err := websocket.Dial(ctx, ts.URL+wire.TerminalPath(sb.ID())+"?"+q.Encode(), &websocket.DialOptions{
		Subprotocols:   []string{wire.TerminalSubprotocol},
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var last wire.TerminalMessage
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("the socket ended with %v; want a normal close after an error frame", err)
			}
			break
		}
		if typ == websocket.MessageText {
			json.Unmarshal(b, &last)
		}
	}
	took := time.Since(start)
	if last.Type != wire.TerminalError || last.Code != wire.CodeTimeout {
		t.Errorf("the last frame %+v; want an error with code timeout", last)
	}
	if took < idle {
		t.Errorf("the idle terminal was closed after %v; want at least the %v idle time", took, idle)
	}
	// About idle/termPingEvery pings; a few are enough to show they go
	// out, and that they did not keep the terminal open.
	if n := pings.Load(); n < 3 {
		t.Errorf("%d pings in %v of silence, one due every %v; want several", n, took, termPingEvery)
	}
	t.Logf("%d pings in %v", pings.Load(), took.Round(time.Millisecond))
}
