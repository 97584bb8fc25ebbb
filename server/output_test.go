package server_test

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// rawSeed posts a seed request and returns the status and the raw reply.
func (e *env) rawSeed(body any) (int, []byte) {
	e.t.Helper()
	resp := e.request(http.MethodPost, wire.ProtocolPath, jsonBody(body), "Content-Type", "application/json")
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("reading the reply: %v", err)
	}
	return resp.StatusCode, b
}

// TestOutputAmplification is the regression test for "output amplified in
// server memory" (issue 9, finding 3): a command printing NUL bytes, each
// 6 bytes in JSON ("\u0000"), made a 201 MB reply out of 16 MiB of output
// per stream and grew the server by ~1 GB a request. Now each stream's
// JSON form is capped at MaxOutputBytes, with "truncated", and the reply
// stays within the documented 2×MaxOutputBytes + 64 KiB.
func TestOutputAmplification(t *testing.T) {
	t.Parallel()
	const limit = 6000
	e := start(t, nil, server.Options{MaxOutputBytes: limit})
	id := e.create()

	// 1 MiB of NULs on each stream.
	code, raw := e.rawSeed(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh",
		"args": []string{"-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"}})
	if code != 200 {
		t.Fatalf("runCommand: %d %s", code, raw)
	}
	if len(raw) > 2*limit+64<<10 {
		t.Errorf("reply of %d bytes; want at most 2×MaxOutputBytes + 64 KiB = %d", len(raw), 2*limit+64<<10)
	}
	var m struct {
		Result struct {
			Stdout, Stderr string
			Truncated      bool
			ExitCode       int
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("reply is not JSON: %v", err)
	}
	if want := strings.Repeat("\x00", limit/6); m.Result.Stdout != want || m.Result.Stderr != want || !m.Result.Truncated || m.Result.ExitCode != 0 {
		t.Errorf("result: %d and %d NULs, truncated %v, exit %d; want %d NULs each (what fits in %d bytes of JSON), truncated, exit 0",
			len(m.Result.Stdout), len(m.Result.Stderr), m.Result.Truncated, m.Result.ExitCode, limit/6, limit)
	}

	// Output that fits is whole and not truncated; text is counted as it
	// is sent (a newline is 2 bytes: "\n").
	m2 := e.seedOK(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", "printf 'a\\tb\\n\\001é\"'"}})
	res := m2["result"].(map[string]any)
	if res["stdout"] != "a\tb\n\x01é\"" || res["truncated"] != nil {
		t.Errorf("small output: %q, truncated %v; want it whole", res["stdout"], res["truncated"])
	}

	// runCode goes through the same capture.
	m2 = e.seedOK(map[string]any{"action": "compute.sandbox.runCode", "sandboxId": id, "code": "import sys\nsys.stdout.write('\\0' * 100000)"})
	res = m2["result"].(map[string]any)
	if res["stdout"] != strings.Repeat("\x00", limit/6) || res["truncated"] != true {
		t.Errorf("runCode of 100000 NULs: %d bytes, truncated %v; want %d, truncated", len(res["stdout"].(string)), res["truncated"], limit/6)
	}

	// readFile: a file counts as it is sent. 2000 NULs are 12000 bytes of
	// JSON: refused, naming the download; in base64 (2668 bytes) it fits.
	e.shell(id, "head -c 2000 /dev/zero > nul")
	code, m3 := e.seed(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "nul"})
	if code != 413 || !strings.Contains(m3["error"].(string), "12000 once encoded") || !strings.Contains(m3["error"].(string), "/files?path=nul") {
		t.Errorf("readFile of 2000 NULs as text: %d %v; want 413 saying its encoded size and where to download it", code, m3)
	}
	m3 = e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "nul", "encoding": "base64"})
	if m3["fileContent"] != base64.StdEncoding.EncodeToString(make([]byte, 2000)) || m3["encoding"] != "base64" {
		t.Errorf("readFile of 2000 NULs in base64: %v; want the bytes", m3["encoding"])
	}
	// A file larger than the limit is refused without being read whole.
	e.shell(id, "head -c 10000000 /dev/zero > big")
	if code, m3 := e.seed(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "big", "encoding": "base64"}); code != 413 {
		t.Errorf("readFile of 10 MB: %d %v; want 413", code, m3)
	}
	// An empty file still has its content.
	e.shell(id, ": > empty")
	if m3 := e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "empty"}); m3["fileContent"] != "" {
		t.Errorf("readFile of an empty file: %v; want fileContent \"\"", m3)
	}

	// A directory listing larger than a reply may be is refused.
	e.shell(id, "mkdir many && cd many && i=0; while [ $i -lt 200 ]; do : > f$i; i=$((i+1)); done")
	code, m3 = e.seed(map[string]any{"action": "compute.sandbox.filesystem.readdir", "sandboxId": id, "path": "many"})
	if code != 413 || !strings.Contains(m3["error"].(string), "200 entries") {
		t.Errorf("readdir of 200 entries past the limit: %d %v; want 413", code, m3)
	}
	e.v1Err("GET", "/sandboxes/"+id+"/dir?path=many", nil, 413, wire.CodeTooLarge)
}

// TestRequestNotUTF8 checks that a JSON body that is not UTF-8 is refused
// (each such byte would decode to a 3-byte U+FFFD, a request's strings
// growing 3 times over its body).
func TestRequestNotUTF8(t *testing.T) {
	t.Parallel()
	e := start(t, nil, server.Options{})
	id := e.create()
	code, m := e.seed(`{"action":"compute.sandbox.filesystem.writeFile","sandboxId":"` + id + `","path":"f","content":"` + strings.Repeat("\xff", 1000) + `"}`)
	if code != 400 || !strings.Contains(m["error"].(string), "base64") {
		t.Errorf("writeFile with bytes that are not UTF-8: %d %v; want 400 pointing to base64", code, m)
	}
	// Escaped and base64 content still arrives exact.
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "f", "content": "\x00é\u2028"})
	if got := e.shell(id, "od -An -tx1 f | tr -d ' \\n'"); got != "00c3a9e280a8" {
		t.Errorf("written bytes %s; want 00c3a9e280a8", got)
	}
	e.seedOK(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "g", "content": base64.StdEncoding.EncodeToString([]byte{0xff, 0, 1}), "encoding": "base64"})
	if got := e.shell(id, "od -An -tx1 g | tr -d ' \\n'"); got != "ff0001" {
		t.Errorf("written bytes %s; want ff0001", got)
	}
	if code, m := e.seed(map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "g", "content": "not base64!", "encoding": "base64"}); code != 400 {
		t.Errorf("writeFile of bad base64: %d %v; want 400", code, m)
	}
	if got := e.shell(id, "od -An -tx1 g | tr -d ' \\n'"); got != "ff0001" {
		t.Errorf("after a refused write the file holds %s; want the old ff0001", got)
	}
}

var outBytes = flag.Int("outbytes", 64<<20, "BenchmarkSeedOutputMemory: bytes of NULs the command prints on each stream")

// BenchmarkSeedOutputMemory measures the server's peak heap while a seed
// runCommand prints -outbytes NUL bytes on each of stdout and stderr and
// readFile returns a 12 MiB file of NULs in base64 (16 MiB sent) and refuses a 16 MB one as text (96 MB of JSON) (issue 9, finding 3).
// It reports the peak live heap above the heap before the request
// (peak-heap-MiB, sampled every millisecond), the bytes allocated during
// the request (alloc-MiB) and the reply's size (reply-MiB).
//
//	go test ./server -run '^$' -bench SeedOutputMemory -benchtime 3x -outbytes 1073741824
func BenchmarkSeedOutputMemory(b *testing.B) {
	for _, c := range []struct {
		name string
		req  func(id string) map[string]any
	}{
		{"runCommand", func(id string) map[string]any {
			n := strconv.Itoa(*outBytes)
			return map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "sh", "args": []string{"-c", "head -c " + n + " /dev/zero; head -c " + n + " /dev/zero >&2"}}
		}},
		{"readFile", func(id string) map[string]any {
			return map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "nul16", "encoding": "base64"}
		}},
		{"readFileText", func(id string) map[string]any {
			// 16 MB of NULs as text: 96 MB of JSON, past the default limit.
			return map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "nul16MB"}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newLocal(b)
			srv := server.New(p, server.Options{})
			defer srv.Close()
			ts := httptest.NewServer(srv)
			defer ts.Close()
			post := func(body any) (int, int64) {
				resp, err := http.Post(ts.URL+wire.ProtocolPath, "application/json", jsonBody(body))
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				n, _ := io.Copy(io.Discard, resp.Body)
				return resp.StatusCode, n
			}
			var created struct{ SandboxID string }
			resp, err := http.Post(ts.URL+wire.ProtocolPath, "application/json", strings.NewReader(`{"action":"compute.sandbox.create"}`))
			if err != nil {
				b.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&created)
			resp.Body.Close()
			post(map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": created.SandboxID, "command": "sh", "args": []string{"-c", "head -c 12582912 /dev/zero > nul16; head -c 16000000 /dev/zero > nul16MB"}})
			var peak, reply, alloc float64
			for b.Loop() {
				runtime.GC()
				base := heapLive()
				allocs := heapAllocs()
				var top atomic.Uint64
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						if h := heapLive(); h > top.Load() {
							top.Store(h)
						}
						select {
						case <-stop:
							return
						case <-time.After(time.Millisecond):
						}
					}
				}()
				code, n := post(c.req(created.SandboxID))
				close(stop)
				<-done
				alloc = float64(heapAllocs()-allocs) / (1 << 20)
				if code != 200 {
					b.Logf("status %d", code)
				}
				peak = max(peak, float64(top.Load()-min(base, top.Load()))/(1<<20))
				reply = float64(n) / (1 << 20)
			}
			b.ReportMetric(peak, "peak-heap-MiB")
			b.ReportMetric(reply, "reply-MiB")
			b.ReportMetric(alloc, "alloc-MiB")
		})
	}
}

// heapAllocs is the bytes allocated on the heap so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapLive is the bytes of live and not yet swept heap objects.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
