package modaltest_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	modal "github.com/modal-labs/modal-client/go"

	"github.com/computesdk-go/compute/modal/modaltest"
)

func TestSnapshotFilesystem(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	h.run(sb, []string{"sh", "-c", "mkdir -p /workspace/proj && echo data > /workspace/proj/f && echo tmp > /tmp/t && ln -s proj/f /workspace/link && mkdir -p /app && echo app > /app/main"}, nil)
	img, err := sb.SnapshotFilesystem(h.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.ImageID == "" || img.ImageID == sb.SandboxID {
		t.Fatalf("snapshot image id %q", img.ImageID)
	}
	sb.Terminate(h.ctx, nil)

	restored := h.create2(img, nil)
	out, errOut, code := h.run(restored, []string{"sh", "-c", "cat /workspace/proj/f /tmp/t /workspace/link /app/main"}, nil)
	if out != "data\ntmp\ndata\napp\n" || code != 0 {
		t.Errorf("files in the sandbox made from the snapshot: %q (stderr %q, exit %d)", out, errOut, code)
	}
	rec, _ := h.srv.Sandbox(restored.SandboxID)
	if rec.ImageID != img.ImageID || rec.Image != "python:3.13-slim" {
		t.Errorf("record of the restored sandbox: image %s %q", rec.ImageID, rec.Image)
	}
	// The image can be looked up by id.
	if got, err := h.client.Images.FromID(h.ctx, img.ImageID, nil); err != nil || got.ImageID != img.ImageID {
		t.Errorf("Images.FromID = %v, %v", got, err)
	}
}

func TestSnapshotDirectoryAndMount(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	sb := h.create(nil)
	h.run(sb, []string{"sh", "-c", "mkdir -p /workspace/d/sub && echo one > /workspace/d/sub/one"}, nil)
	img, err := sb.SnapshotDirectory(h.ctx, "/workspace/d", nil)
	if err != nil {
		t.Fatal(err)
	}
	other := h.create(nil)
	if err := other.MountImage(h.ctx, "/mnt/d", img, nil); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := h.run(other, []string{"cat", "/mnt/d/sub/one"}, nil); out != "one\n" {
		t.Errorf("mounted file: %q", out)
	}
}

// create2 creates a sandbox from an image.
func (h *harness) create2(img *modal.Image, params *modal.SandboxCreateParams) *modal.Sandbox {
	h.t.Helper()
	sb, err := h.client.Sandboxes.Create(h.ctx, h.app, img, params)
	if err != nil {
		h.t.Fatalf("Sandboxes.Create from %s: %v", img.ImageID, err)
	}
	h.release(sb)
	return sb
}

// server is a line echo server for the sandbox, in Python: the sandbox
// runs the host's python3.
const server = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    f = c.makefile("rwb")
    for line in f:
        f.write(b"echo: " + line)
        f.flush()
    c.close()
`

func TestTunnels(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed on this machine: the test's server in the sandbox needs it")
	}
	h := newHarness(t, modaltest.Options{})
	probe, _ := modal.NewTCPProbe(8000, nil)
	sb := h.create(&modal.SandboxCreateParams{
		Command:          []string{"python3", "-c", server, "8000"},
		EncryptedPorts:   []int{8000},
		UnencryptedPorts: []int{9000},
		ReadinessProbe:   probe,
	})
	if err := sb.WaitUntilReady(h.ctx, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	// A second server for the unencrypted port.
	p, err := sb.Exec(h.ctx, []string{"python3", "-c", server, "9000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = p
	tunnels, err := sb.Tunnels(h.ctx, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, raw := tunnels[8000], tunnels[9000]
	if enc == nil || raw == nil || raw.UnencryptedPort == 0 {
		t.Fatalf("tunnels = %+v", tunnels)
	}
	if !strings.HasPrefix(enc.URL(), "https://127.0.0.1:") {
		t.Errorf("URL = %q", enc.URL())
	}
	host, port := enc.TLSSocket()
	conn, err := tls.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)), h.srv.TunnelTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := roundTrip(t, conn, "over TLS"); got != "echo: over TLS\n" {
		t.Errorf("TLS tunnel answered %q", got)
	}
	// The plain TCP endpoint, retried until the second server listens.
	host, rport, err := raw.TCPSocket()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(rport)))
		if err == nil {
			got := roundTrip(t, c, "plain")
			c.Close()
			if got == "echo: plain\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the unencrypted tunnel never reached the server on port 9000")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.srv.CallCount("SandboxGetTunnelsV2") != 1 {
		t.Errorf("SandboxGetTunnelsV2 calls = %d, want 1 (the create response lacks the unencrypted tunnel)", h.srv.CallCount("SandboxGetTunnelsV2"))
	}
}

func roundTrip(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return ""
	}
	got, _ := bufio.NewReader(c).ReadString('\n')
	return got
}

func TestConnectToken(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed on this machine: the test's web server in the sandbox needs it")
	}
	h := newHarness(t, modaltest.Options{})
	probe, _ := modal.NewTCPProbe(8080, nil)
	script := `
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("path=%s user=%s" % (self.path, self.headers.get("X-Verified-User-Data"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 8080), H).serve_forever()
`
	sb := h.create(&modal.SandboxCreateParams{Command: []string{"python3", "-c", script}, ReadinessProbe: probe})
	if err := sb.WaitUntilReady(h.ctx, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	creds, err := sb.CreateConnectToken(h.ctx, &modal.SandboxCreateConnectTokenParams{UserMetadata: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	client := h.srv.TunnelClient()
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(h.ctx, "GET", creds.URL+"/hello?x=1", nil)
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "path=/hello?x=1 user=alice" {
		t.Errorf("through the connect URL: %d %q", resp.StatusCode, body)
	}
	resp, err = client.Get(creds.URL + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}
}

func TestDockerfileCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t, modaltest.Options{})
	cmds := []string{"RUN mkdir -p /opt/app && echo built > /opt/app/v", `ENV GREETING="hi there" MODE=test`, "WORKDIR /opt/app"}
	img := h.client.Images.FromRegistry("alpine:3.21", nil).DockerfileCommands(cmds, nil)
	sb := h.create2(img, nil)
	out, errOut, _ := h.run(sb, []string{"sh", "-c", `cat v; echo "$GREETING $MODE"; pwd`}, nil)
	if out != "built\nhi there test\n/opt/app\n" {
		t.Errorf("sandbox of the built image: %q (stderr %q)", out, errOut)
	}
	// The same definition is not built again.
	again, err := h.client.Images.FromRegistry("alpine:3.21", nil).DockerfileCommands(cmds, nil).Build(h.ctx, h.app, nil)
	if err != nil || again.ImageID != img.ImageID {
		t.Errorf("rebuilt image %v, %v; want %s", again, err, img.ImageID)
	}
	// A failing RUN fails the build, with its output.
	_, err = h.client.Images.FromRegistry("alpine:3.21", nil).DockerfileCommands([]string{"RUN echo boom >&2; exit 3"}, nil).Build(h.ctx, h.app, nil)
	var remote modal.RemoteError
	if !errors.As(err, &remote) || !strings.Contains(err.Error(), "exit code 3") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing build: %v", err)
	}
}
