package computetest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/computetest"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/local"
)

// The suite must catch broken providers. TestCatchesBrokenProviders runs
// cases of the suite, in a child process, against the local provider with
// one behaviour broken on purpose, and checks that exactly the case for
// that behaviour fails (and passes when nothing is broken).

const mutantEnv = "COMPUTETEST_MUTANT"

func TestCatchesBrokenProviders(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("skipped: running as a child of this test")
	}
	if _, err := local.New(local.Options{}); err != nil {
		t.Skipf("skipped: the local provider cannot run here: %v", err)
	}
	cases := []struct{ mutant, name string }{
		{"nostream", "Command/Streaming"},
		{"noenv", "Command/Env"},
		{"nodir", "Command/Dir"},
		{"nostdin", "Command/Stdin"},
		{"notfound", "Command/NotFound"},
		{"exitzero", "Command/ExitCodes"},
		{"nometadata", "Sandbox/Info"},
		{"nodestroy", "Lifecycle/GetList"},
		{"nolist", "Lifecycle/GetList"},
	}
	// child runs the named cases against the provider broken by mutant and
	// reports which of them passed.
	child := func(mutant string, names ...string) (passed map[string]bool, out []byte, err error) {
		var groups, subs []string
		for _, n := range names {
			g, s, _ := strings.Cut(n, "/")
			groups, subs = append(groups, g), append(subs, s)
		}
		pattern := "^TestMutantChild$/^(" + strings.Join(groups, "|") + ")$/^(" + strings.Join(subs, "|") + ")$"
		cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), mutantEnv+"="+mutant)
		out, err = cmd.CombinedOutput()
		passed = map[string]bool{}
		for _, n := range names {
			passed[n] = bytes.Contains(out, []byte("--- PASS: TestMutantChild/"+n+" "))
		}
		return passed, out, err
	}

	var names []string
	for _, c := range cases {
		names = append(names, c.name)
	}
	passed, out, err := child("none", names...)
	for _, n := range names {
		if err != nil || !passed[n] {
			t.Fatalf("%s against the healthy local provider: %v; want it to pass\n%s", n, err, out)
		}
	}
	// A provider without node, declared with SkipNode: the node cases are
	// skipped and RunCode must say node is unsupported.
	t.Run("SkipNode", func(t *testing.T) {
		t.Parallel()
		passed, out, err := child("nonode", "RunCode/Missing_node", "RunCode/NodeHello")
		if err != nil || !passed["RunCode/Missing_node"] || !bytes.Contains(out, []byte("--- SKIP: TestMutantChild/RunCode/NodeHello ")) {
			t.Errorf("SkipNode against a provider without node: %v; want Missing_node to pass and NodeHello skipped\n%s", err, out)
		}
	})
	for _, c := range cases {
		t.Run(c.mutant, func(t *testing.T) {
			t.Parallel()
			passed, out, err := child(c.mutant, c.name)
			if err == nil || passed[c.name] {
				t.Errorf("%s against a provider broken by %q passed; want it to fail\n%s", c.name, c.mutant, out)
			}
		})
	}
}

// TestMutantChild is the child process of TestCatchesBrokenProviders.
func TestMutantChild(t *testing.T) {
	m := os.Getenv(mutantEnv)
	if m == "" {
		t.Skip("skipped: run by TestCatchesBrokenProviders only")
	}
	p, err := local.New(local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var opts []computetest.Option
	if m == "nonode" {
		opts = append(opts, computetest.SkipNode())
	}
	computetest.Run(t, &mutantProvider{Provider: p, mode: m}, opts...)
}

// mutantProvider is the local provider with one behaviour broken.
type mutantProvider struct {
	*local.Provider
	mode string
}

type fsSandbox interface {
	driver.Sandbox
	driver.FileSystemer
}

func (p *mutantProvider) wrap(ps driver.Sandbox, err error) (driver.Sandbox, error) {
	if err != nil {
		return nil, err
	}
	return &mutantSandbox{fsSandbox: ps.(fsSandbox), mode: p.mode}, nil
}

func (p *mutantProvider) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	return p.wrap(p.Provider.Create(ctx, opts))
}

func (p *mutantProvider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	return p.wrap(p.Provider.Get(ctx, id))
}

func (p *mutantProvider) List(ctx context.Context) ([]driver.Sandbox, error) {
	if p.mode == "nolist" {
		return nil, nil
	}
	return p.Provider.List(ctx)
}

func (p *mutantProvider) Destroy(ctx context.Context, id string) error {
	if p.mode == "nodestroy" {
		return nil
	}
	return p.Provider.Destroy(ctx, id)
}

type mutantSandbox struct {
	fsSandbox
	mode string
}

func (s *mutantSandbox) Info(ctx context.Context) (*compute.Info, error) {
	info, err := s.fsSandbox.Info(ctx)
	if err == nil && s.mode == "nometadata" {
		info.Metadata = nil
	}
	return info, err
}

func (s *mutantSandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	r := *req
	proc := &mutantProcess{mode: s.mode}
	switch s.mode {
	case "noenv":
		r.Env = nil
	case "nodir":
		r.Dir = ""
	case "nostdin":
		r.Stdin = nil
	case "nostream":
		// Hold all output back until the command has ended.
		var out, errb syncBuffer
		r.Stdout, r.Stderr = &out, &errb
		proc.flush = func() {
			io.Copy(req.Stdout, &out)
			io.Copy(req.Stderr, &errb)
		}
	}
	if s.mode == "nonode" && r.Argv[0] == "node" {
		return nil, fmt.Errorf("node: %w", compute.ErrCommandNotFound)
	}
	p, err := s.fsSandbox.Start(ctx, &r)
	if s.mode == "notfound" && errors.Is(err, compute.ErrCommandNotFound) {
		err = errors.New("no such file")
	}
	if err != nil {
		return nil, err
	}
	proc.Process = p
	return proc, nil
}

type mutantProcess struct {
	driver.Process
	mode  string
	flush func()
}

func (p *mutantProcess) Wait() (int, error) {
	code, err := p.Process.Wait()
	if p.flush != nil {
		time.Sleep(10 * time.Millisecond)
		p.flush()
	}
	if p.mode == "exitzero" {
		code = 0
	}
	return code, err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Read(p)
}
