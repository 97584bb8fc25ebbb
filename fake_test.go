package compute_test

// An in-memory provider for this package's tests, in the spirit of
// database/sql's fakedb: sandboxes are values in a map, commands come from
// a small table of built-in programs (echo, true, false, sleep, cat, pwd,
// env, exit) that write real stdout and stderr and return real exit codes,
// and the filesystem is a map of paths. It needs no kernel feature, so the
// routing tests run on every OS.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
)

// fakeSeq numbers the sandboxes of every fake provider, so that ids are
// unique across providers (as the router's id affinity assumes).
var fakeSeq atomic.Int64

// fakeProvider is an in-memory driver.Provider. Its error fields inject
// failures; its counters say how often it was asked.
type fakeProvider struct {
	name string

	createErr error // when set, Create fails with it
	getErr    error // when set, Get fails with it
	listErr   error // when set, List fails with it

	creates, gets, starts atomic.Int32

	mu    sync.Mutex
	boxes map[string]*fakeSandbox
}

func newFake(name string) *fakeProvider {
	return &fakeProvider{name: name, boxes: map[string]*fakeSandbox{}}
}

// failing returns a fake whose Create always fails with err.
func failing(name string, err error) *fakeProvider {
	f := newFake(name)
	f.createErr = err
	return f
}

func (p *fakeProvider) Name() string { return p.name }

func (p *fakeProvider) Create(ctx context.Context, opts *compute.CreateOptions) (driver.Sandbox, error) {
	p.creates.Add(1)
	if p.createErr != nil {
		return nil, p.createErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := "/work"
	if opts.Dir != "" {
		dir = path.Clean(path.Join("/work", opts.Dir))
	}
	now := time.Now()
	sb := &fakeSandbox{
		p:     p,
		id:    fmt.Sprintf("%s-%d", p.name, fakeSeq.Add(1)),
		dir:   dir,
		env:   maps.Clone(opts.Env),
		info:  compute.Info{Provider: p.name, Name: opts.Name, Status: compute.StatusRunning, Runtime: opts.Runtime, CreatedAt: now, Timeout: opts.Timeout, Metadata: maps.Clone(opts.Metadata)},
		files: map[string]*fakeFile{},
		procs: map[*fakeProcess]bool{},
	}
	sb.info.ID = sb.id
	for _, d := range []string{"/", "/tmp", dir} {
		sb.mkdirAll(d, now)
	}
	p.mu.Lock()
	p.boxes[sb.id] = sb
	p.mu.Unlock()
	if opts.Timeout > 0 {
		sb.mu.Lock()
		sb.lifetime = time.AfterFunc(opts.Timeout, func() { p.Destroy(context.Background(), sb.id) })
		sb.mu.Unlock()
	}
	return sb, nil
}

func (p *fakeProvider) Get(ctx context.Context, id string) (driver.Sandbox, error) {
	p.gets.Add(1)
	if p.getErr != nil {
		return nil, p.getErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sb := p.boxes[id]; sb != nil {
		return sb, nil
	}
	return nil, fmt.Errorf("%s: sandbox %q: %w", p.name, id, compute.ErrNotFound)
}

func (p *fakeProvider) List(ctx context.Context) ([]driver.Sandbox, error) {
	if p.listErr != nil {
		return nil, p.listErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []driver.Sandbox
	for _, id := range slices.Sorted(maps.Keys(p.boxes)) {
		out = append(out, p.boxes[id])
	}
	return out, nil
}

func (p *fakeProvider) Destroy(ctx context.Context, id string) error {
	p.mu.Lock()
	sb := p.boxes[id]
	delete(p.boxes, id)
	p.mu.Unlock()
	if sb != nil {
		sb.stop()
	}
	return nil
}

// live reports how many sandboxes p holds.
func (p *fakeProvider) live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.boxes)
}

// fakeSandbox is one in-memory sandbox. It has a native filesystem
// (driver.FileSystemer) and no other optional ability.
type fakeSandbox struct {
	p   *fakeProvider
	id  string
	dir string
	env map[string]string

	mu       sync.Mutex
	lifetime *time.Timer // destroys the sandbox at its Timeout
	info     compute.Info
	files    map[string]*fakeFile // cleaned absolute path -> file
	procs    map[*fakeProcess]bool
	stopped  bool
}

type fakeFile struct {
	dir     bool
	data    []byte
	modTime time.Time
}

func (s *fakeSandbox) ID() string { return s.id }

func (s *fakeSandbox) Info(ctx context.Context) (*compute.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.info
	info.Metadata = maps.Clone(info.Metadata)
	return &info, nil
}

// stop marks the sandbox stopped and kills its processes.
func (s *fakeSandbox) stop() {
	s.mu.Lock()
	if s.lifetime != nil {
		s.lifetime.Stop()
	}
	s.stopped = true
	s.info.Status = compute.StatusStopped
	procs := slices.Collect(maps.Keys(s.procs))
	s.mu.Unlock()
	for _, pr := range procs {
		pr.Kill()
	}
}

// fakeCommand is a built-in program: it runs until done or killed and
// returns its exit code.
type fakeCommand func(pr *fakeProcess, args []string) int

var fakeCommands map[string]fakeCommand

func init() {
	fakeCommands = map[string]fakeCommand{
		"true":  func(*fakeProcess, []string) int { return 0 },
		"false": func(*fakeProcess, []string) int { return 1 },
		"echo": func(pr *fakeProcess, args []string) int {
			io.WriteString(pr.stdout, strings.Join(args, " ")+"\n")
			return 0
		},
		"pwd": func(pr *fakeProcess, args []string) int {
			io.WriteString(pr.stdout, pr.dir+"\n")
			return 0
		},
		"env": func(pr *fakeProcess, args []string) int {
			for _, k := range slices.Sorted(maps.Keys(pr.env)) {
				fmt.Fprintf(pr.stdout, "%s=%s\n", k, pr.env[k])
			}
			return 0
		},
		// exit CODE [MESSAGE]: writes MESSAGE to stderr and exits CODE.
		"exit": func(pr *fakeProcess, args []string) int {
			if len(args) > 1 {
				io.WriteString(pr.stderr, args[1]+"\n")
			}
			if len(args) == 0 {
				return 0
			}
			n, err := strconv.Atoi(args[0])
			if err != nil {
				fmt.Fprintf(pr.stderr, "exit: %s: numeric argument required\n", args[0])
				return 2
			}
			return n & 0xff
		},
		"sleep": func(pr *fakeProcess, args []string) int {
			if len(args) != 1 {
				io.WriteString(pr.stderr, "sleep: want one operand\n")
				return 1
			}
			secs, err := strconv.ParseFloat(args[0], 64)
			if err != nil || secs < 0 {
				fmt.Fprintf(pr.stderr, "sleep: invalid time interval %q\n", args[0])
				return 1
			}
			t := time.NewTimer(time.Duration(secs * float64(time.Second)))
			defer t.Stop()
			select {
			case <-t.C:
				return 0
			case <-pr.killed:
				return 128 + 9
			}
		},
		// cat with no operands copies stdin to stdout; with operands it
		// prints the files, and names a missing one on stderr.
		"cat": func(pr *fakeProcess, args []string) int {
			if len(args) == 0 {
				return pr.copyStdin()
			}
			code := 0
			for _, name := range args {
				data, err := pr.sb.readFile(pr.abs(name))
				if err != nil {
					fmt.Fprintf(pr.stderr, "cat: %s: %v\n", name, err)
					code = 1
					continue
				}
				pr.stdout.Write(data)
			}
			return code
		},
	}
}

func (s *fakeSandbox) Start(ctx context.Context, req *driver.ExecRequest) (driver.Process, error) {
	s.p.starts.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := req.Argv[0]
	for _, dir := range []string{"/bin/", "/usr/bin/"} {
		name = strings.TrimPrefix(name, dir)
	}
	cmd := fakeCommands[name]
	if cmd == nil {
		return nil, fmt.Errorf("fake: %s: %w", req.Argv[0], compute.ErrCommandNotFound)
	}
	env := map[string]string{"PATH": "/usr/bin:/bin", "HOME": s.dir}
	maps.Copy(env, s.env)
	maps.Copy(env, req.Env)
	pr := &fakeProcess{
		sb:     s,
		dir:    s.dir,
		env:    env,
		stdin:  req.Stdin,
		stdout: req.Stdout,
		stderr: req.Stderr,
		killed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if req.Dir != "" {
		pr.dir = pr.abs(req.Dir)
	}
	if st, err := s.stat(pr.dir); err != nil || !st.dir {
		return nil, fmt.Errorf("fake: working directory %s: %w", pr.dir, fs.ErrNotExist)
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, fmt.Errorf("fake: sandbox %s: %w", s.id, compute.ErrStopped)
	}
	s.procs[pr] = true
	s.mu.Unlock()
	go func() {
		pr.code = cmd(pr, req.Argv[1:])
		s.mu.Lock()
		delete(s.procs, pr)
		s.mu.Unlock()
		close(pr.done)
	}()
	return pr, nil
}

// fakeProcess is a running built-in program. Only its own goroutine
// writes to stdout and stderr, so their order is kept when they are one
// writer (driver.SameWriter).
type fakeProcess struct {
	sb             *fakeSandbox
	dir            string
	env            map[string]string
	stdin          io.Reader
	stdout, stderr io.Writer

	killOnce sync.Once
	killed   chan struct{}
	done     chan struct{}
	code     int
}

func (pr *fakeProcess) abs(name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join(pr.dir, name)
}

// copyStdin copies stdin to stdout until EOF or a kill. The reading
// happens in a goroutine of its own (a Read may block for ever); what it
// reads is written here, by the process's goroutine.
func (pr *fakeProcess) copyStdin() int {
	if pr.stdin == nil {
		return 0
	}
	chunks := make(chan []byte)
	failed := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.stdin.Read(buf)
			if n > 0 {
				select {
				case chunks <- bytes.Clone(buf[:n]):
				case <-pr.killed:
					return
				case <-pr.done:
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				failed <- err
				return
			}
		}
	}()
	for {
		select {
		case b := <-chunks:
			pr.stdout.Write(b)
		case err := <-failed:
			if err != nil {
				fmt.Fprintf(pr.stderr, "cat: -: %v\n", err)
				return 1
			}
			return 0
		case <-pr.killed:
			return 128 + 9
		}
	}
}

func (pr *fakeProcess) Wait() (int, error) {
	<-pr.done
	return pr.code, nil
}

func (pr *fakeProcess) Kill() error {
	pr.killOnce.Do(func() { close(pr.killed) })
	return nil
}

// The in-memory filesystem.

func (s *fakeSandbox) FileSystem() driver.FileSystem { return fakeFS{s} }

type fakeFS struct{ s *fakeSandbox }

func (f fakeFS) abs(name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join(f.s.dir, name)
}

// mkdirAllLocked creates directory p and its parents; s.mu is held.
func (s *fakeSandbox) mkdirAllLocked(p string, now time.Time) error {
	if p != "/" {
		if err := s.mkdirAllLocked(path.Dir(p), now); err != nil {
			return err
		}
	}
	switch f := s.files[p]; {
	case f == nil:
		s.files[p] = &fakeFile{dir: true, modTime: now}
	case !f.dir:
		return &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
	}
	return nil
}

func (s *fakeSandbox) mkdirAll(p string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mkdirAllLocked(p, now)
}

func (s *fakeSandbox) stat(p string) (fakeFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[p]
	if f == nil {
		return fakeFile{}, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	return *f, nil
}

func (s *fakeSandbox) readFile(p string) ([]byte, error) {
	f, err := s.stat(p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	if f.dir {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("is a directory")}
	}
	return bytes.Clone(f.data), nil
}

func (f fakeFS) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	data, err := f.s.readFile(f.abs(name))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (f fakeFS) WriteFile(ctx context.Context, name string, r io.Reader) error {
	p := f.abs(name)
	data, err := io.ReadAll(r) // all or nothing: a failed read changes nothing
	if err != nil {
		return &fs.PathError{Op: "write", Path: p, Err: err}
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	now := time.Now()
	if err := f.s.mkdirAllLocked(path.Dir(p), now); err != nil {
		return err
	}
	if old := f.s.files[p]; old != nil && old.dir {
		return &fs.PathError{Op: "write", Path: p, Err: errors.New("is a directory")}
	}
	f.s.files[p] = &fakeFile{data: data, modTime: now}
	return nil
}

func (f fakeFS) MkdirAll(ctx context.Context, name string) error {
	return f.s.mkdirAll(f.abs(name), time.Now())
}

func (f fakeFS) info(p string, file fakeFile) compute.FileInfo {
	mode := uint32(0o644)
	if file.dir {
		mode = 0o755
	}
	return compute.FileInfo{Name: path.Base(p), Path: p, IsDir: file.dir, Size: int64(len(file.data)), Mode: mode, ModTime: file.modTime}
}

func (f fakeFS) ReadDir(ctx context.Context, name string) ([]compute.FileInfo, error) {
	p := f.abs(name)
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	d := f.s.files[p]
	if d == nil {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: fs.ErrNotExist}
	}
	if !d.dir {
		return nil, &fs.PathError{Op: "readdir", Path: p, Err: errors.New("not a directory")}
	}
	var out []compute.FileInfo
	for q, file := range f.s.files {
		if q != "/" && path.Dir(q) == p {
			out = append(out, f.info(q, *file))
		}
	}
	slices.SortFunc(out, func(a, b compute.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f fakeFS) Stat(ctx context.Context, name string) (*compute.FileInfo, error) {
	p := f.abs(name)
	file, err := f.s.stat(p)
	if err != nil {
		return nil, err
	}
	info := f.info(p, file)
	return &info, nil
}

func (f fakeFS) RemoveAll(ctx context.Context, name string) error {
	p := f.abs(name)
	if p == "/" {
		return &fs.PathError{Op: "remove", Path: p, Err: fs.ErrPermission}
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	for q := range f.s.files {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(f.s.files, q)
		}
	}
	return nil
}
