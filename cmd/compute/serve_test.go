package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// served is a "compute serve" running in this process.
type served struct {
	url    string
	stdout *syncBuffer
	stderr *syncBuffer
	stop   func() int
}

// startServe runs "compute serve --addr 127.0.0.1:0 ARGS" until the test
// ends (or stop) and returns the URL it printed.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	s := startServeAt(t, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	first, _, _ := strings.Cut(s.stdout.String(), "\n")
	url, ok := strings.CutPrefix(first, "listening on ")
	if !ok {
		t.Fatalf("first line %q; want \"listening on URL\"", first)
	}
	s.url = url
	for _, want := range []string{"seed protocol: POST " + url + "/api/compute", "OpenAPI:       GET  " + url + "/api/compute/openapi.json"} {
		if !strings.Contains(s.stdout.String(), want) {
			t.Errorf("compute serve printed %q; want it to say %q", s.stdout.String(), want)
		}
	}
	return s
}

// startServeAt runs "compute serve ARGS" until the test ends (or stop),
// once it has printed where it listens.
func startServeAt(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	printed := make(chan struct{})
	var once sync.Once
	stdout.onWrite = func() {
		if strings.Contains(stdout.String(), "clients:") {
			once.Do(func() { close(printed) })
		}
	}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve"}, args...), strings.NewReader(""), &stdout, &stderr)
	}()
	select {
	case <-printed:
	case code := <-done:
		cancel()
		t.Fatalf("compute serve exited %d before listening; stderr:\n%s", code, stderr.String())
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("compute serve printed nothing in a minute; stderr:\n%s", stderr.String())
	}
	var code int
	var stopOnce sync.Once
	s := &served{stdout: &stdout, stderr: &stderr, stop: func() int {
		stopOnce.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}}
	t.Cleanup(func() { s.stop() })
	return s
}

func TestServe(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	// The group returns once its parallel cases are done.
	t.Run("clients", func(t *testing.T) { serveClients(t, s) })

	// The seed protocol, as a web app would call it.
	resp, err := http.Post(s.url+"/api/compute", "application/json", strings.NewReader(`{"action":"compute.sandbox.list"}`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 200 || m["success"] != true || m["provider"] != "local" {
		t.Errorf("seed list: %d %v; want success from the local provider", resp.StatusCode, m)
	}
	if n := len(m["sandboxes"].([]any)); n != 0 {
		t.Errorf("%d sandboxes left after the CLI runs; want 0 (each run destroys its own)", n)
	}

	if code := s.stop(); code != 0 {
		t.Errorf("compute serve exited %d after the interrupt; want 0\nstderr:\n%s", code, s.stderr.String())
	}
	for _, want := range []string{"msg=request", "path=/api/compute", "shutting down"} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("stderr does not contain %q:\n%s", want, s.stderr.String())
		}
	}
}

// serveClients runs the CLI against a server, several at once.
func serveClients(t *testing.T, s *served) {
	for _, c := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
	}{
		{"exec", "", []string{"exec", "--server", s.url, "--env", "N=7", "--", "sh", "-c", "echo hi $N; exit 3"}, 3, "hi 7\n"},
		{"run", "", []string{"run", "--server", s.url, "-c", "print(6 * 7)"}, 0, "42\n"},
		{"stdin", "hello", []string{"exec", "--server", s.url, "--stdin", "--", "tr", "a-z", "A-Z"}, 0, "HELLO"},
		{"timeout", "", []string{"exec", "--server", s.url, "--timeout", "500ms", "--", "sleep", "30"}, exitTimeout, ""},
		{"not found", "", []string{"exec", "--server", s.url, "--", "no-such-command-xyz"}, exitNotFound, ""},
		{"syntax error", "", []string{"run", "--server", s.url, "-c", "def (:"}, 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cli(t, c.stdin, c.args...).check(t, c.code, c.stdout)
		})
	}
}

// TestServeToken is not parallel: it sets COMPUTE_TOKEN.
func TestServeToken(t *testing.T) {
	t.Setenv(tokenEnv, "")
	s := startServe(t, "--token", "the-servers-token-0123456789")
	o := cli(t, "", "exec", "--server", s.url, "--", "true")
	o.check(t, exitFailure, "")
	o.stderrContains(t, "invalid bearer token")

	t.Setenv(tokenEnv, "the-servers-token-0123456789")
	cli(t, "", "exec", "--server", s.url, "--", "echo", "ok").check(t, 0, "ok\n")

	// The token may come from the environment alone.
	s2 := startServe(t)
	cli(t, "", "exec", "--server", s2.url, "--", "echo", "env").check(t, 0, "env\n")
	t.Setenv(tokenEnv, "another")
	cli(t, "", "exec", "--server", s2.url, "--", "true").stderrContains(t, "invalid bearer token")
}

// TestServeRefusesOpenAddress is not parallel: it clears COMPUTE_TOKEN.
func TestServeRefusesOpenAddress(t *testing.T) {
	t.Setenv(tokenEnv, "")
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "example.com:0"} {
		o := cli(t, "", "serve", "--addr", addr)
		if o.code != exitUsage || !strings.Contains(o.stderr, "refusing to listen on "+addr+" without a token") {
			t.Errorf("serve --addr %s without a token: exit %d, stderr %q; want exit 2 and a refusal", addr, o.code, o.stderr)
		}
	}
}

func TestServeUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--addr", "nonsense"},
		{"serve", "--tls-cert", "c.pem"},
		{"serve", "--max-sandboxes", "0"},
		{"serve", "--log-format", "xml"},
		{"serve", "--isolation", "weak"},
		{"serve", "--isolation", "none"},
		{"serve", "extra"},
		{"serve", "--allow-local-images", "--token", "some-token-0123456789"},
		{"serve", "--allow-images", "--allow-local-images"},
		{"exec", "--server", "ftp://host", "--", "true"},
		{"exec", "--server", "http://127.0.0.1:1", "--isolation", "none", "--", "true"},
		{"run", "--server", "http://127.0.0.1:1", "--provider", "modal", "-c", "1"},
	} {
		o := cli(t, "", args...)
		if o.code != exitUsage {
			t.Errorf("compute %q: exit %d, stderr %q; want %d", args, o.code, o.stderr, exitUsage)
		}
	}
	o := cli(t, "", "exec", "--server", "http://127.0.0.1:1", "--", "true")
	if o.code != exitFailure || !strings.Contains(o.stderr, "connect") {
		t.Errorf("exec against a closed port: exit %d, stderr %q; want 1 and a connection error", o.code, o.stderr)
	}
}

// TestServeLocalOnly checks that a server without a token serves only this
// machine: browsers on other sites and other host names are refused.
func TestServeLocalOnly(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	body := `{"action":"compute.sandbox.list"}`
	for _, c := range []struct {
		host, origin string
		code         int
	}{
		{"", "", 200},
		{"", "http://localhost:3000", 200},
		{"", "https://evil.example", 403},
		{"", "null", 403},
		{"rebound.evil.example", "", 403},
	} {
		req, _ := http.NewRequest("POST", s.url+"/api/compute", strings.NewReader(body))
		if c.host != "" {
			req.Host = c.host
		}
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.code == 403 && m["success"] != false) {
			t.Errorf("Host %q, Origin %q: %d %v; want %d", c.host, c.origin, resp.StatusCode, m, c.code)
		}
	}
}

// TLS files are checked before the server says where it listens.
func TestServeChecksTLSFirst(t *testing.T) {
	t.Parallel()
	o := cli(t, "", "serve", "--addr", "127.0.0.1:0", "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem")
	o.check(t, exitUsage, "")
	o.stderrContains(t, "/no/cert.pem")
	if strings.Contains(o.stderr, "shutting down") {
		t.Errorf("serve announced a shutdown of a server that never started: %q", o.stderr)
	}
}

// A server on every interface prints an address clients can use, and a
// graceful stop exits 0.
func TestServeAllInterfacesAddress(t *testing.T) {
	t.Parallel()
	s := startServeAt(t, "--addr", "0.0.0.0:0", "--token", "a-long-enough-test-token")
	out := s.stdout.String()
	if strings.Contains(out, "[::]") || strings.Contains(out, "//0.0.0.0") {
		t.Errorf("serve tells clients an address they cannot use:\n%s", out)
	}
	if !strings.Contains(out, "every interface") || !strings.Contains(out, "address:       http://") {
		t.Errorf("serve on 0.0.0.0 printed:\n%s", out)
	}
	if code := s.stop(); code != 0 {
		t.Errorf("serve exited %d after a graceful stop; want 0", code)
	}
}
