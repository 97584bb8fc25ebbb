package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// serveHTTP serves srv through its HTTPServer on a loopback port until
// the test ends, and returns its URL.
func serveHTTP(t *testing.T, srv *server.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// closedByServer reports whether the server closed c: reading what it
// sent ends in EOF (or a reset) rather than blocking until the deadline.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return true // EOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestUnauthenticatedConnectionFlood is the regression test for "20,000
// idle unauthenticated TCP connections stall an authenticated client ~23
// s" (issue 9, degraded): each client address may hold only
// MaxPreAuthConnsPerClient connections that have not authenticated (the
// oldest are closed past it), so a flood cannot use up the server's
// descriptors, and a client with a token is served, on a new connection
// and on the one it already had.
func TestUnauthenticatedConnectionFlood(t *testing.T) {
	t.Parallel()
	const token = "flood-token-0123456789abcdef"
	const perClient, flood = 8, 200
	srv := server.New(newLocal(t), server.Options{Token: token, MaxPreAuthConnsPerClient: perClient, PreAuthTimeout: -1, Logger: slog.New(slog.DiscardHandler)})
	url := serveHTTP(t, srv)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	list := func() (int, bool) {
		var reused bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", url+wire.ProtocolPath, strings.NewReader(`{"action":"compute.sandbox.list"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("authenticated list: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, reused
	}
	if code, _ := list(); code != 200 {
		t.Fatalf("authenticated list: %d", code)
	}

	// The flood: connections that never send a byte.
	var idle []net.Conn
	for range flood {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The server accepted them all and kept only the newest perClient.
	closed := 0
	for _, c := range idle[:flood-perClient] {
		if closedByServer(c) {
			closed++
		}
	}
	if closed != flood-perClient {
		t.Errorf("the server closed %d of the %d oldest idle connections; want all of them", closed, flood-perClient)
	}
	if n := srv.Stats().PreAuthConns; n > perClient {
		t.Errorf("%d unauthenticated connections held; want at most %d", n, perClient)
	}
	// The authenticated connection was not touched, and a new one works.
	if code, reused := list(); code != 200 || !reused {
		t.Errorf("list on the authenticated connection after the flood: %d (reused %v); want 200 on the same connection", code, reused)
	}
	client.CloseIdleConnections()
	if code, _ := list(); code != 200 {
		t.Errorf("list on a new connection after the flood: %d; want 200", code)
	}

	// A wrong token does not authenticate a connection: it stays limited.
	req, _ := http.NewRequest("POST", url+wire.ProtocolPath, strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("wrong token: %d; want 401", resp.StatusCode)
	}
}

// TestPreAuthTimeout checks that a connection that does not authenticate
// is closed after PreAuthTimeout, and one that does is kept.
func TestPreAuthTimeout(t *testing.T) {
	t.Parallel()
	srv := server.New(newLocal(t), server.Options{Token: "timeout-token-0123456789", PreAuthTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	url := serveHTTP(t, srv)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedByServer(c) {
		t.Errorf("an idle unauthenticated connection was not closed")
	}
	// The health check needs no token, and does not authenticate either.
	c2, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET "+wire.HealthPath+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if !closedByServer(c2) {
		t.Errorf("a connection that only asked for the health check was not closed")
	}
	// An authenticated keep-alive connection outlives the timeout (a
	// server with a longer one: the first request must beat it).
	srv2 := server.New(newLocal(t), server.Options{Token: "timeout-token-0123456789", PreAuthTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	url = serveHTTP(t, srv2)
	c3, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	get := "GET " + wire.V1Path + "/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer timeout-token-0123456789\r\n\r\n"
	io.WriteString(c3, get)
	br := bufio.NewReader(c3)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("authenticated request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if n := srv2.Stats().PreAuthConns; n != 0 {
		t.Errorf("%d unauthenticated connections after the authenticated request; want 0", n)
	}
	time.Sleep(2500 * time.Millisecond) // past the timeout
	io.WriteString(c3, get)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("second request on the authenticated connection after the timeout: %v %v; want 200", resp, err)
	}
}
