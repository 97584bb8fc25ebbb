//go:build linux

package local

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/computesdk-go/compute/local/internal/agentproto"
)

// The network allowlist, the host's side. A sandbox created with
// NetworkAllow keeps its own empty network namespace; its agent listens on
// agentproto.ProxyAddr inside it and hands every accepted connection, as a
// descriptor over the control socket, to the host, which speaks HTTP proxy
// on it, checks the destination against the allowlist and only then dials. The decision and
// the dialing happen in the host process, outside the sandbox's reach;
// the sandbox never gets a route out.

// proxyEnv points sandboxed programs at the proxy (agentproto.ProxyAddr).
func proxyEnv() map[string]string {
	u := "http://" + agentproto.ProxyAddr
	return map[string]string{
		"HTTP_PROXY": u, "HTTPS_PROXY": u, "ALL_PROXY": u,
		"http_proxy": u, "https_proxy": u, "all_proxy": u,
		"NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
	}
}

// proxy is a sandbox's allowlist proxy, in the host.
type proxy struct {
	sandboxID string
	allow     map[string]bool // "host:port", host lowercased

	mu      sync.Mutex
	conns   map[net.Conn]bool // open connections, closed by stop
	clients int               // of which from the sandbox
	done    bool
	wg      sync.WaitGroup
}

// maxProxyClients caps the connections one sandbox may hold open to its
// proxy. Each costs the host descriptors (two, once dialled); without a
// cap, idle connections from inside exhausted the host's table and every
// other sandbox's start with it. Connections past it are closed at once.
const maxProxyClients = 128

func newProxy(id string, allow []string) *proxy {
	p := &proxy{sandboxID: id, allow: map[string]bool{}, conns: map[net.Conn]bool{}}
	for _, a := range allow {
		p.allow[normalizeDest(a)] = true
	}
	return p
}

func normalizeDest(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.ToLower(hostport)
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port)
}

// serve receives the connections the agent accepted, until the control
// socket closes (the sandbox ended).
func (p *proxy) serve(ctl *net.UnixConn) {
	defer p.wg.Done()
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		_, oobn, _, _, err := ctl.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		fds, _ := agentproto.ParseRights(oob[:oobn])
		for _, fd := range fds {
			f := os.NewFile(uintptr(fd), "proxied")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				continue
			}
			if !p.trackClient(c) {
				c.Close()
				continue
			}
			p.wg.Add(1)
			go p.handle(c)
		}
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.conns[c] = true
	return true
}

// trackClient tracks a connection from the sandbox, if under the cap.
func (p *proxy) trackClient(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.clients >= maxProxyClients {
		return false
	}
	p.conns[c] = true
	p.clients++
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) untrackClient(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.clients--
	p.mu.Unlock()
	c.Close()
}

// stop closes every proxied connection and waits for the handlers.
func (p *proxy) stop() {
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// handle serves one proxied connection: CONNECT for TLS and anything
// tunnelled, absolute-URI requests for plain HTTP.
func (p *proxy) handle(c net.Conn) {
	defer p.wg.Done()
	defer p.untrackClient(c)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	target := req.Host
	if req.Method != http.MethodConnect {
		if req.URL.Scheme != "http" || req.URL.Host == "" {
			proxyError(c, http.StatusBadRequest, "the sandbox's proxy takes CONNECT or absolute http:// requests")
			return
		}
		target = req.URL.Host
		if req.URL.Port() == "" {
			target = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	}
	dest := normalizeDest(target)
	if !p.allow[dest] {
		proxyError(c, http.StatusForbidden, fmt.Sprintf("compute: %s is not in sandbox %s's network allowlist", target, p.sandboxID))
		return
	}
	up, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		proxyError(c, http.StatusBadGateway, "compute: "+err.Error())
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	if req.Method == http.MethodConnect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
	} else {
		// Forward in origin form. Later requests on this connection go to
		// the same (allowed) destination whatever they say.
		req.RequestURI = ""
		req.Header.Del("Proxy-Connection")
		req.Header.Del("Proxy-Authorization")
		if err := req.Write(up); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, br) // what the client buffered or sends next
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, up)
	c.Close()
	<-done
}

func proxyError(c net.Conn, code int, msg string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(msg)+1, msg+"\n")
}
