package modaltest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal/modaltest/internal/guest"
)

// Tunnels. Every open port of a sandbox gets a TLS endpoint on the host's
// loopback (Tunnel.Host/Port; h2 is negotiated for H2 ports), and an
// unencrypted port also a plain TCP one (UnencryptedHost/Port), as on
// Modal. Each connection is relayed by a guest process inside the sandbox
// that connects to the port on the sandbox's own loopback, so the
// sandbox's network stays isolated. The TLS certificate is the server's
// own: trust it with Server.Certificate, Server.TunnelTLSConfig or
// Server.TunnelClient, as with httptest.Server.

type tunnelTLS struct {
	cert tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

func newTunnelTLS() (*tunnelTLS, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Modal emulator (modaltest)"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tunnelTLS{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf: leaf, pool: pool}, nil
}

// Certificate returns the certificate of the tunnels' TLS endpoints.
func (s *Server) Certificate() *x509.Certificate { return s.tunnelTLS.leaf }

// TunnelTLSConfig returns a TLS client configuration that trusts the
// tunnels' certificate.
func (s *Server) TunnelTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.tunnelTLS.pool}
}

// TunnelClient returns an HTTP client that trusts the tunnels'
// certificate, for requests to Tunnel.URL().
func (s *Server) TunnelClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: s.TunnelTLSConfig(), ForceAttemptHTTP2: true}}
}

type tunnel struct {
	sb     *sandbox
	spec   *pb.PortSpec
	tlsLis net.Listener
	rawLis net.Listener // unencrypted ports only
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]*compute.Process
}

func newTunnel(sb *sandbox, spec *pb.PortSpec) (*tunnel, error) {
	t := &tunnel{sb: sb, spec: spec, conns: map[net.Conn]*compute.Process{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{sb.s.tunnelTLS.cert}}
	if spec.GetTunnelType() == pb.TunnelType_TUNNEL_TYPE_H2 {
		cfg.NextProtos = []string{"h2"}
	}
	t.tlsLis = tls.NewListener(lis, cfg)
	if spec.GetUnencrypted() {
		if t.rawLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			lis.Close()
			return nil, err
		}
	}
	for _, l := range []net.Listener{t.tlsLis, t.rawLis} {
		if l == nil {
			continue
		}
		t.wg.Add(1)
		go t.accept(l)
	}
	return t, nil
}

func port(l net.Listener) uint32 { return uint32(l.Addr().(*net.TCPAddr).Port) }

func (t *tunnel) data() *pb.TunnelData {
	d := pb.TunnelData_builder{Host: "127.0.0.1", Port: port(t.tlsLis), ContainerPort: t.spec.GetPort()}
	if t.rawLis != nil {
		host, p := "127.0.0.1", port(t.rawLis)
		d.UnencryptedHost, d.UnencryptedPort = &host, &p
	}
	return d.Build()
}

func (sb *sandbox) tunnelList() []*tunnel {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return append([]*tunnel(nil), sb.tunnels...)
}

func (t *tunnel) accept(l net.Listener) {
	defer t.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = nil
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serve(c)
	}
}

// serve relays one connection through a guest inside the sandbox.
func (t *tunnel) serve(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}()
	sb := t.sb
	sb.hold()
	defer sb.release()
	if tc, ok := c.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(sb.ctx, 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return
		}
	}
	path, err := sb.installGuest()
	if err != nil {
		sb.s.log.Warn("tunnel: installing the relay", "sandbox_id", sb.id, "error", err)
		return
	}
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	h, err := cs.Start(sb.ctx, []string{path, strconv.Itoa(int(t.spec.GetPort()))}, &compute.RunOptions{
		Env: guestEnv(guest.ModeConnect), Stdin: c, Stdout: c, MaxOutput: -1,
	})
	if err != nil {
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		h.Kill()
	} else {
		t.conns[c] = h
		t.mu.Unlock()
	}
	h.Wait()
}

// close stops accepting, ends every connection and waits for the relays.
func (t *tunnel) close() {
	t.mu.Lock()
	t.closed = true
	for c, h := range t.conns {
		c.Close()
		if h != nil {
			h.Kill()
		}
	}
	t.mu.Unlock()
	t.tlsLis.Close()
	if t.rawLis != nil {
		t.rawLis.Close()
	}
	t.wg.Wait()
}
