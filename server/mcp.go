package server

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/mcp"
)

// MCPPath is where a Server answers the Model Context Protocol over
// streamable HTTP: package mcp's tools (run_code, run_command, files,
// sandboxes) for AI agents.
//
// It sits behind the same middleware as every other endpoint: the bearer
// token (401 without it), the loopback-only rule of a server without one,
// the request timeout, the access log. A session's sandboxes are created
// through the server's registry: they count against MaxSandboxes, follow
// its network rules, belong to the tenant whose token opened the session
// (the session answers only that tenant's tokens, 403 otherwise), and are
// destroyed when the session ends (DELETE, or 30 minutes without a
// request) and by Shutdown. The idle reaper leaves them alone while their
// session holds them.
const MCPPath = "/mcp"

// mcpEndpoint is the server's MCP endpoint.
type mcpEndpoint struct {
	srv     *mcp.Server
	handler http.Handler
}

// initMCP makes the MCP endpoint; its sessions end when s.base does (at
// Shutdown, once requests are over), which Shutdown waits for.
func (s *Server) initMCP() {
	s.mcp.srv = mcp.NewServer(nil, &mcp.Options{
		Sandboxes:    registrySandboxes{s},
		AllowNetwork: s.opts.AllowNetwork && s.authenticated(),
		AllowImages:  s.opts.AllowImages,
		Logger:       s.log,
	})
	h := s.mcp.srv.Handler()
	if s.authenticated() {
		// The middleware has checked the token; this hands the tenant to
		// the SDK, which then refuses a session's requests from any other
		// tenant (a session id is not a credential).
		h = auth.RequireBearerToken(func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
			return &auth.TokenInfo{UserID: callerOf(ctx).tenant}, nil
		}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(h)
	}
	s.mcp.handler = h
	s.background.add()
	context.AfterFunc(s.base, func() {
		defer s.background.done()
		if err := s.mcp.srv.Close(); err != nil {
			s.log.Error("server: closing the MCP sessions", "error", err)
		}
	})
}

// handleMCP serves MCPPath, after the middleware.
func (s *Server) handleMCP(w http.ResponseWriter, r *http.Request) error {
	s.mcp.handler.ServeHTTP(w, r)
	return nil
}

// registrySandboxes gives MCP sessions sandboxes from the server's
// registry, for the caller that opened the session.
type registrySandboxes struct{ s *Server }

func (rs registrySandboxes) Create(ctx context.Context, opts *compute.CreateOptions) (*compute.Sandbox, error) {
	e, err := rs.s.create(ctx, opts)
	if err != nil {
		return nil, err
	}
	// In use while its session holds it: the idle reaper leaves it be.
	rs.s.mu.Lock()
	e.active++
	rs.s.mu.Unlock()
	return e.sb, nil
}

func (rs registrySandboxes) Destroy(_ context.Context, sb *compute.Sandbox) error {
	s := rs.s
	s.mu.Lock()
	e := s.sandboxes[sb.ID()]
	if e != nil && e.sb == sb {
		e.active--
	} else {
		e = nil // destroyed already (a client's DELETE, Shutdown)
	}
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	return s.retire(e)
}
