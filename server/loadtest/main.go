// Command loadtest measures a compute server under load: N concurrent
// clients, each doing M rounds of create, runCommand, writeFile, readFile
// and destroy, against a server on loopback that wraps the local provider
// (or against -server URL). It runs the same workload three ways: in
// process on the provider (the baseline), through the remote provider (the
// v1 endpoints), and through the seed's JSON protocol; and reports
// requests per second, p50/p99 latency per operation, errors, the
// sandboxes left, and the server's overhead per request (p50 over HTTP
// minus p50 in process, at the same concurrency).
//
//	go run ./server/loadtest                      # 1 and 8 clients, 20 rounds each
//	go run ./server/loadtest -clients 32 -rounds 50
//	go run ./server/loadtest -server http://host:8080 -token $COMPUTE_TOKEN
//
// It exits 1 when any operation failed or a sandbox was left behind. It is
// a measurement, not a test: the figures depend on the machine.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/remote"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

var ops = []string{"create", "runCommand", "writeFile", "readFile", "destroy"}

func main() {
	clientsFlag := flag.String("clients", "1,8", "concurrent clients; a comma-separated list runs each level")
	rounds := flag.Int("rounds", 20, "rounds per client (one round: create, runCommand, writeFile, readFile, destroy)")
	size := flag.Int("size", 4096, "bytes written and read per round")
	serverURL := flag.String("server", "", "an existing compute server to load (default: start one on loopback for the local provider)")
	token := flag.String("token", os.Getenv("COMPUTE_TOKEN"), "the server's token (default: $COMPUTE_TOKEN)")
	flag.Parse()
	var levels []int
	for _, f := range strings.Split(*clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "loadtest: bad -clients %q\n", *clientsFlag)
			os.Exit(2)
		}
		levels = append(levels, n)
	}
	if err := run(levels, *rounds, *size, *serverURL, *token); err != nil {
		fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
		os.Exit(1)
	}
}

func run(levels []int, rounds, size int, serverURL, token string) error {
	ctx := context.Background()
	var lp *local.Provider
	var srv *server.Server
	var hs *http.Server
	maxClients := slices.Max(levels)
	if serverURL == "" {
		var err error
		if lp, err = local.New(local.Options{}); err != nil {
			return err
		}
		defer lp.Close()
		srv = server.New(lp, server.Options{Token: token, MaxSandboxes: maxClients * 2, Logger: slog.New(slog.DiscardHandler)})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		hs = &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
		go hs.Serve(ln)
		serverURL = "http://" + ln.Addr().String()
	}
	fmt.Printf("loadtest: %d rounds per client, %d-byte files, server %s, %d CPUs, %s\n\n", rounds, size, serverURL, runtime.NumCPU(), runtime.Version())

	rp := remote.New(serverURL, token)
	defer rp.Close()
	seed := newSeedClient(serverURL, token, maxClients)
	defer seed.client.CloseIdleConnections()

	failed := false
	for _, n := range levels {
		var results []*phase
		if lp != nil {
			results = append(results, load(ctx, "in process", n, rounds, size, computeWorker(compute.New(compute.Config{Provider: lp}))))
		}
		results = append(results, load(ctx, "remote (v1)", n, rounds, size, computeWorker(compute.New(compute.Config{Provider: rp}))))
		results = append(results, load(ctx, "seed (JSON)", n, rounds, size, seed.worker))
		report(n, results)
		for _, r := range results {
			failed = failed || r.errors > 0
		}
	}

	left, err := rp.List(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("sandboxes left on the server: %d\n", len(left))
	if srv != nil {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		hs.Shutdown(sctx)
		if err := srv.Shutdown(sctx); err != nil {
			return err
		}
		list, _ := lp.List(ctx)
		fmt.Printf("sandboxes left in the provider after shutdown: %d\n", len(list))
		if len(list) > 0 {
			failed = true
		}
	}
	if failed || len(left) > 0 {
		return errors.New("errors or sandboxes left (see above)")
	}
	return nil
}

// phase is one mode at one concurrency.
type phase struct {
	name     string
	clients  int
	wall     time.Duration
	lat      map[string][]time.Duration
	errors   int
	firstErr error
}

// worker runs one round and records each operation's latency.
type worker func(ctx context.Context, data []byte, rec func(op string, d time.Duration)) error

func load(ctx context.Context, name string, clients, rounds, size int, w worker) *phase {
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	// Warm up (one round, not counted): the first sandbox of a process
	// pays for caches.
	w(ctx, data, func(string, time.Duration) {})
	p := &phase{name: name, clients: clients, lat: map[string][]time.Duration{}}
	var mu sync.Mutex
	rec := func(op string, d time.Duration) {
		mu.Lock()
		p.lat[op] = append(p.lat[op], d)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for range rounds {
				if err := w(ctx, data, rec); err != nil {
					mu.Lock()
					p.errors++
					if p.firstErr == nil {
						p.firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	p.wall = time.Since(start)
	return p
}

func timed(rec func(string, time.Duration), op string, f func() error) error {
	t := time.Now()
	err := f()
	rec(op, time.Since(t))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// computeWorker is a round through the compute API, on any provider.
func computeWorker(c *compute.Compute) worker {
	return func(ctx context.Context, data []byte, rec func(string, time.Duration)) error {
		var sb *compute.Sandbox
		if err := timed(rec, "create", func() (err error) { sb, err = c.Create(ctx, nil); return err }); err != nil {
			return err
		}
		defer sb.Destroy(context.Background()) // no-op after the timed destroy
		err := timed(rec, "runCommand", func() error {
			res, err := sb.RunCommand(ctx, "echo", "hello")
			if err == nil && (res.ExitCode != 0 || res.Stdout != "hello\n") {
				err = fmt.Errorf("got exit %d, stdout %q", res.ExitCode, res.Stdout)
			}
			return err
		})
		if err != nil {
			return err
		}
		fsys := sb.FileSystem()
		if err := timed(rec, "writeFile", func() error { return fsys.WriteFile(ctx, "load.bin", data) }); err != nil {
			return err
		}
		err = timed(rec, "readFile", func() error {
			got, err := fsys.ReadFile(ctx, "load.bin")
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("read %d bytes, not what was written", len(got))
			}
			return err
		})
		if err != nil {
			return err
		}
		return timed(rec, "destroy", func() error { return sb.Destroy(ctx) })
	}
}

// seedClient speaks the seed's JSON protocol, as a web app would.
type seedClient struct {
	url, token string
	client     *http.Client
}

func newSeedClient(url, token string, conns int) *seedClient {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = conns
	return &seedClient{url: url + wire.ProtocolPath, token: token, client: &http.Client{Transport: t}}
}

func (s *seedClient) post(ctx context.Context, body map[string]any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	if m["success"] != true {
		return nil, fmt.Errorf("status %d: %v", resp.StatusCode, m["error"])
	}
	return m, nil
}

func (s *seedClient) worker(ctx context.Context, data []byte, rec func(string, time.Duration)) error {
	var id string
	err := timed(rec, "create", func() error {
		m, err := s.post(ctx, map[string]any{"action": "compute.sandbox.create"})
		if err == nil {
			id, _ = m["sandboxId"].(string)
		}
		return err
	})
	if err != nil {
		return err
	}
	defer s.post(context.Background(), map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
	err = timed(rec, "runCommand", func() error {
		m, err := s.post(ctx, map[string]any{"action": "compute.sandbox.runCommand", "sandboxId": id, "command": "echo", "args": []string{"hello"}})
		if err == nil {
			if res, _ := m["result"].(map[string]any); res["stdout"] != "hello\n" {
				err = fmt.Errorf("result %v", res)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	content := base64.StdEncoding.EncodeToString(data)
	err = timed(rec, "writeFile", func() error {
		_, err := s.post(ctx, map[string]any{"action": "compute.sandbox.filesystem.writeFile", "sandboxId": id, "path": "load.bin", "content": content, "encoding": "base64"})
		return err
	})
	if err != nil {
		return err
	}
	err = timed(rec, "readFile", func() error {
		m, err := s.post(ctx, map[string]any{"action": "compute.sandbox.filesystem.readFile", "sandboxId": id, "path": "load.bin", "encoding": "base64"})
		if err == nil && m["fileContent"] != content {
			err = errors.New("readFile returned other content")
		}
		return err
	})
	if err != nil {
		return err
	}
	return timed(rec, "destroy", func() error {
		_, err := s.post(ctx, map[string]any{"action": "compute.sandbox.destroy", "sandboxId": id})
		return err
	})
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func report(clients int, results []*phase) {
	fmt.Printf("== %d concurrent client(s) ==\n", clients)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trequests\terrors\treq/s\tp50 ms\tp99 ms\t\tcreate p50/p99\trunCommand\twriteFile\treadFile\tdestroy\t")
	for _, p := range results {
		var all []time.Duration
		for _, op := range ops {
			all = append(all, p.lat[op]...)
		}
		row := fmt.Sprintf("%s\t%d\t%d\t%.0f\t%s\t%s\t", p.name, len(all), p.errors, float64(len(all))/p.wall.Seconds(), ms(pct(all, 50)), ms(pct(all, 99)))
		for _, op := range ops {
			row += fmt.Sprintf("\t%s/%s", ms(pct(p.lat[op], 50)), ms(pct(p.lat[op], 99)))
		}
		fmt.Fprintln(tw, row+"\t")
	}
	tw.Flush()
	if base := results[0]; base.name == "in process" {
		for _, p := range results[1:] {
			fmt.Printf("overhead of %s over in process (p50 difference):", p.name)
			for _, op := range ops {
				fmt.Printf(" %s %+.2f ms;", op, float64(pct(p.lat[op], 50)-pct(base.lat[op], 50))/float64(time.Millisecond))
			}
			fmt.Println()
		}
	}
	for _, p := range results {
		if p.firstErr != nil {
			fmt.Printf("%s: %d errors, the first: %v\n", p.name, p.errors, p.firstErr)
		}
	}
	fmt.Println()
}
