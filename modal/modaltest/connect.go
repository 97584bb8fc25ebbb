package modaltest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal/modaltest/internal/guest"
)

// Connect tokens (Sandbox.CreateConnectToken). Each sandbox gets, on
// demand, an HTTPS proxy on the host's loopback (the tunnels' certificate)
// that forwards requests carrying a token ("Authorization: Bearer TOKEN",
// or the _modal_connect_token query parameter) to the token's port inside
// the sandbox, with the token's user metadata in X-Verified-User-Data.

type connectToken struct {
	port     int
	metadata string
}

type connectProxy struct {
	sb     *sandbox
	lis    net.Listener
	srv    *http.Server
	tr     *http.Transport
	done   chan struct{}
	mu     sync.Mutex
	tokens map[string]connectToken
}

func (c *controlPlane) SandboxCreateConnectToken(ctx context.Context, req *pb.SandboxCreateConnectTokenRequest) (*pb.SandboxCreateConnectTokenResponse, error) {
	return c.connectToken(req)
}

func (c *controlPlane) SandboxCreateConnectTokenV2(ctx context.Context, req *pb.SandboxCreateConnectTokenRequest) (*pb.SandboxCreateConnectTokenResponse, error) {
	return c.connectToken(req)
}

func (c *controlPlane) connectToken(req *pb.SandboxCreateConnectTokenRequest) (*pb.SandboxCreateConnectTokenResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	port := 8080
	if req.HasPort() {
		port = int(req.GetPort())
	}
	if port < 1 || port > 65535 {
		return nil, status.Errorf(codes.InvalidArgument, "port %d is out of range", port)
	}
	p, err := sb.connectProxy()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 24)
	rand.Read(b)
	tok := "ct-" + base64.RawURLEncoding.EncodeToString(b)
	p.mu.Lock()
	p.tokens[tok] = connectToken{port: port, metadata: req.GetUserMetadata()}
	p.mu.Unlock()
	u := url.URL{Scheme: "https", Host: p.lis.Addr().String()}
	return pb.SandboxCreateConnectTokenResponse_builder{Url: u.String(), Token: tok}.Build(), nil
}

// connectProxy starts the sandbox's proxy, once.
func (sb *sandbox) connectProxy() (*connectProxy, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.result != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	if sb.proxy != nil {
		return sb.proxy, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	p := &connectProxy{sb: sb, lis: lis, tokens: map[string]connectToken{}, done: make(chan struct{})}
	p.tr = &http.Transport{DialContext: p.dial, DisableCompression: true}
	p.srv = &http.Server{Handler: p, TLSConfig: &tls.Config{Certificates: []tls.Certificate{sb.s.tunnelTLS.cert}}}
	go func() {
		defer close(p.done)
		p.srv.ServeTLS(lis, "", "")
	}()
	sb.proxy = p
	return p, nil
}

type portKey struct{}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	q := r.URL.Query()
	if tok == "" {
		tok = q.Get("_modal_connect_token")
	}
	p.mu.Lock()
	ct, ok := p.tokens[tok]
	p.mu.Unlock()
	if !ok {
		http.Error(w, "missing or invalid connect token", http.StatusUnauthorized)
		return
	}
	p.sb.hold()
	defer p.sb.release()
	rp := &httputil.ReverseProxy{
		Transport: p.tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "sandbox:" + strconv.Itoa(ct.port)
			q := pr.Out.URL.Query()
			q.Del("_modal_connect_token")
			pr.Out.URL.RawQuery = q.Encode()
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("X-Verified-User-Data", ct.metadata)
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), portKey{}, ct.port))
		},
	}
	rp.ServeHTTP(w, r)
}

// dial connects to a port inside the sandbox through a guest relay.
func (p *connectProxy) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	port, _ := ctx.Value(portKey{}).(int)
	return p.sb.dial(port)
}

// dial returns a connection to a port on the sandbox's loopback, relayed
// by a guest process; closing it ends the relay.
func (sb *sandbox) dial(port int) (net.Conn, error) {
	path, err := sb.installGuest()
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	if cs == nil || !sb.running() {
		return nil, errors.New("the sandbox has finished")
	}
	mine, theirs := net.Pipe()
	h, err := cs.Start(sb.ctx, []string{path, strconv.Itoa(port)}, &compute.RunOptions{
		Env: guestEnv(guest.ModeConnect), Stdin: theirs, Stdout: theirs, MaxOutput: -1,
	})
	if err != nil {
		mine.Close()
		theirs.Close()
		return nil, err
	}
	sb.s.goBackground(func() {
		h.Wait()
		theirs.Close()
	})
	return &relayConn{Conn: mine, h: h}, nil
}

type relayConn struct {
	net.Conn
	h    *compute.Process
	once sync.Once
}

func (c *relayConn) Close() error {
	c.once.Do(func() { c.h.Kill() })
	return c.Conn.Close()
}

// close stops the proxy and its connections.
func (p *connectProxy) close() {
	p.srv.Close()
	<-p.done
	p.tr.CloseIdleConnections()
}
