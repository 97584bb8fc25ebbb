package server

import (
	"container/list"
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults for the limits on connections that have not authenticated.
const (
	DefaultMaxPreAuthConnsPerClient = 32
	DefaultMaxPreAuthConns          = 4096
	DefaultPreAuthTimeout           = 10 * time.Second
)

// HTTPServer returns an http.Server that serves s and limits what clients
// that have not authenticated may hold, so that a flood of idle
// connections cannot starve the clients that have a token:
//
//   - A connection counts as unauthenticated until it sends a request
//     that passes the token check (on a server without a token, any
//     request of this machine's). Each client address (an IPv4 address,
//     an IPv6 /64) may hold Options.MaxPreAuthConnsPerClient of them, and
//     all clients together Options.MaxPreAuthConns: past either, the
//     oldest unauthenticated connection is closed.
//   - An unauthenticated connection is closed Options.PreAuthTimeout after
//     it opened.
//   - Headers must arrive within 30 s and hold at most 64 KiB; an idle
//     keep-alive connection is closed after 2 minutes.
//
// Set the http.Server's other fields as needed (Addr, TLSConfig,
// ErrorLog), then serve: hs.Serve(ln), hs.ServeTLS(ln, cert, key). Its
// Handler is s; a handler that wraps s keeps the limits. Shutdown the
// http.Server and s both.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       s.conns.connContext,
		ConnState:         s.conns.connState,
	}
}

// connGuard tracks the connections that have not authenticated, oldest
// first, overall and per client.
type connGuard struct {
	perClient, total int
	timeout          time.Duration
	log              *slog.Logger

	mu       sync.Mutex
	all      *list.List // of *guarded, oldest first
	byClient map[string]*list.List
	conns    map[net.Conn]*guarded
	closed   int64 // connections closed by the limits, for the log
}

// guarded is an unauthenticated connection.
type guarded struct {
	c         net.Conn
	client    string
	inAll     *list.Element
	inClient  *list.Element
	expire    *time.Timer
	evictedBy string
}

func newConnGuard(opts *Options) *connGuard {
	g := &connGuard{
		perClient: opts.MaxPreAuthConnsPerClient,
		total:     opts.MaxPreAuthConns,
		timeout:   opts.PreAuthTimeout,
		log:       opts.Logger,
		all:       list.New(),
		byClient:  map[string]*list.List{},
		conns:     map[net.Conn]*guarded{},
	}
	if g.perClient == 0 {
		g.perClient = DefaultMaxPreAuthConnsPerClient
	}
	if g.total == 0 {
		g.total = DefaultMaxPreAuthConns
	}
	if g.timeout == 0 {
		g.timeout = DefaultPreAuthTimeout
	}
	return g
}

type connKey struct{}

func (g *connGuard) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// clientOf is the key a connection's peer is counted under: its IP
// address, or for IPv6 its /64, which one host commonly holds whole.
func clientOf(c net.Conn) string {
	addr := c.RemoteAddr()
	if addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

func (g *connGuard) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		g.add(c)
	case http.StateClosed, http.StateHijacked:
		g.mu.Lock()
		if gc := g.conns[c]; gc != nil {
			g.remove(gc)
		}
		g.mu.Unlock()
	}
}

func (g *connGuard) add(c net.Conn) {
	gc := &guarded{c: c, client: clientOf(c)}
	var evict []*guarded
	g.mu.Lock()
	g.conns[c] = gc
	gc.inAll = g.all.PushBack(gc)
	mine := g.byClient[gc.client]
	if mine == nil {
		mine = list.New()
		g.byClient[gc.client] = mine
	}
	gc.inClient = mine.PushBack(gc)
	if g.perClient > 0 && mine.Len() > g.perClient {
		old := mine.Front().Value.(*guarded)
		old.evictedBy = "its client's"
		evict = append(evict, old)
		g.remove(old)
	}
	if g.total > 0 && g.all.Len() > g.total {
		old := g.all.Front().Value.(*guarded)
		old.evictedBy = "all clients'"
		evict = append(evict, old)
		g.remove(old)
	}
	if g.timeout > 0 {
		gc.expire = time.AfterFunc(g.timeout, func() { g.expire(gc) })
	}
	g.closed += int64(len(evict))
	n := g.closed
	g.mu.Unlock()
	for _, old := range evict {
		old.c.Close()
	}
	if len(evict) > 0 && n&(n-1) == 0 {
		// Logged at 1, 2, 4, 8, ... closures: visible, never a flood.
		g.log.Warn("server: closed connections that had not authenticated, over the limit of unauthenticated connections", "limit", evict[0].evictedBy, "client", evict[0].client, "closed_so_far", n)
	}
}

// expire closes a connection that did not authenticate in time.
func (g *connGuard) expire(gc *guarded) {
	g.mu.Lock()
	if g.conns[gc.c] != gc {
		g.mu.Unlock()
		return
	}
	g.remove(gc)
	g.mu.Unlock()
	gc.c.Close()
}

// remove forgets gc; the caller holds g.mu.
func (g *connGuard) remove(gc *guarded) {
	if g.conns[gc.c] != gc {
		return
	}
	delete(g.conns, gc.c)
	g.all.Remove(gc.inAll)
	if mine := g.byClient[gc.client]; mine != nil {
		mine.Remove(gc.inClient)
		if mine.Len() == 0 {
			delete(g.byClient, gc.client)
		}
	}
	if gc.expire != nil {
		gc.expire.Stop()
	}
}

// authenticated takes the request's connection off the unauthenticated
// ones: it is no longer limited.
func (g *connGuard) authenticated(r *http.Request) {
	c, ok := r.Context().Value(connKey{}).(net.Conn)
	if !ok {
		return
	}
	g.mu.Lock()
	if gc := g.conns[c]; gc != nil {
		g.remove(gc)
	}
	g.mu.Unlock()
}

// preAuth returns how many connections are unauthenticated now.
func (g *connGuard) preAuth() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.all.Len()
}
