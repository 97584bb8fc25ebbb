package server

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// routes registers the v1 endpoints.
func (s *Server) routes() {
	for pattern, h := range s.routeTable() {
		s.mux.Handle(pattern, &v1Route{s, h})
	}
}

// routeTable is every v1 endpoint, by ServeMux pattern.
func (s *Server) routeTable() map[string]func(http.ResponseWriter, *http.Request) error {
	sb := wire.V1Path + "/sandboxes/{id}"
	return map[string]func(http.ResponseWriter, *http.Request) error{
		"POST " + wire.V1Path + "/sandboxes":     s.v1Create,
		"GET " + wire.V1Path + "/sandboxes":      s.v1List,
		"GET " + sb:                              s.v1Info,
		"DELETE " + sb:                           s.v1Destroy,
		"POST " + sb + "/exec":                   s.v1Exec,
		"GET " + sb + "/processes":               s.v1Processes,
		"POST " + sb + "/processes/{pid}/stdin":  s.v1Stdin,
		"POST " + sb + "/processes/{pid}/kill":   s.v1Kill,
		"GET " + sb + "/files":                   s.v1Download,
		"PUT " + sb + "/files":                   s.v1Upload,
		"DELETE " + sb + "/files":                s.v1Remove,
		"GET " + sb + "/stat":                    s.v1Stat,
		"GET " + sb + "/dir":                     s.v1ReadDir,
		"POST " + sb + "/dir":                    s.v1Mkdir,
		"POST " + sb + "/contexts":               s.v1NewContext,
		"GET " + sb + "/contexts":                s.v1Contexts,
		"GET " + sb + "/contexts/{ctx}":          s.v1ContextInfo,
		"DELETE " + sb + "/contexts/{ctx}":       s.v1CloseContext,
		"POST " + sb + "/contexts/{ctx}/restart": s.v1RestartContext,
		"POST " + sb + "/contexts/{ctx}/run":     s.v1RunCell,
		terminalRoute:                            s.v1Terminal,
	}
}

// v1Route is a v1 endpoint: its error, if any, is written in v1 form.
type v1Route struct {
	s *Server
	h func(http.ResponseWriter, *http.Request) error
}

func (v *v1Route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw, ok := w.(*respWriter) // always, through serve
	if !ok {
		rw = &respWriter{ResponseWriter: w, status: http.StatusOK}
	}
	if err := v.h(rw, r); err != nil {
		v.s.writeError(rw, r, flavorV1, err)
	}
}

func (s *Server) infoOf(ctx context.Context, e *entry) (*wire.SandboxInfo, error) {
	info, err := e.sb.Info(ctx)
	if err != nil {
		return nil, err
	}
	rt := info.Runtime
	if rt == "" {
		rt = e.runtime
	}
	wi := wire.NewSandboxInfo(info)
	wi.Provider, wi.Runtime = s.provider, string(rt)
	return &wi, nil
}

func (s *Server) v1Create(w http.ResponseWriter, r *http.Request) error {
	annotate(r, "create", "")
	var req wire.CreateRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	// The options are validated once, by package compute (ErrInvalid is
	// a 400); only what the protocol adds is checked here.
	timeout, err := millis("timeout", float64(req.Timeout))
	if err != nil {
		return err
	}
	if err := checkLabels(req.Name, req.Metadata); err != nil {
		return err
	}
	e, err := s.create(r.Context(), &compute.CreateOptions{
		Runtime: compute.Runtime(req.Runtime), Timeout: timeout, Env: req.Env, Dir: req.Dir, Name: req.Name, Metadata: req.Metadata,
		Network: compute.Network(req.Network), NetworkAllow: req.NetworkAllow, GPU: req.GPU, Image: req.Image, ImageSteps: req.ImageSteps,
		ImageContext: imageContext(req.ImageFiles),
	})
	if err != nil {
		return err
	}
	annotate(r, "", e.sb.ID())
	info, err := s.infoOf(r.Context(), e)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (s *Server) v1List(w http.ResponseWriter, r *http.Request) error {
	annotate(r, "list", "")
	entries, err := s.list(r.Context())
	if err != nil {
		return err
	}
	out := wire.SandboxList{Sandboxes: []wire.SandboxInfo{}}
	for _, e := range entries {
		info, err := s.infoOf(r.Context(), e)
		if err != nil {
			continue // it ended meanwhile
		}
		out.Sandboxes = append(out.Sandboxes, *info)
	}
	rep := newReply(w, http.StatusOK)
	rep.raw(`{"sandboxes":[`)
	for i := range out.Sandboxes {
		if i > 0 {
			rep.raw(`,`)
		}
		rep.value(&out.Sandboxes[i])
	}
	rep.raw(`]}`)
	rep.end()
	return nil
}

func (s *Server) v1Info(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "info", id)
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()
	// Ask the provider, so that a sandbox whose lifetime ended is reported
	// gone.
	if _, err := s.c.Get(r.Context(), id); err != nil {
		s.gone(e, err)
		return err
	}
	info, err := s.infoOf(r.Context(), e)
	if err != nil {
		s.gone(e, err)
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) v1Destroy(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "destroy", id)
	if err := s.destroyFor(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sandboxFS returns the sandbox named by the path and the ?path= file.
func (s *Server) sandboxFS(r *http.Request, op string) (*entry, func(), string, error) {
	id := r.PathValue("id")
	annotate(r, op, id)
	path := r.URL.Query().Get("path")
	if err := checkPath(path); err != nil {
		return nil, nil, "", badRequest("query parameter path is required: %v", err)
	}
	e, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return nil, nil, "", err
	}
	return e, release, path, nil
}

func (s *Server) v1Download(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "download")
	if err != nil {
		return err
	}
	defer release()
	f, err := e.sb.FileSystem().Open(r.Context(), path)
	if err != nil {
		s.gone(e, err)
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	src := &errReader{r: f}
	io.CopyBuffer(w, src, make([]byte, 256<<10)) // src.err says whether the file was read whole
	if src.err != nil && r.Context().Err() == nil {
		// The file could not be read to its end: cut the response so that
		// the client sees a broken transfer, not a short file.
		s.log.Warn("server: download failed part way", "sandbox", e.sb.ID(), "path", path, "error", src.err)
		panic(http.ErrAbortHandler)
	}
	return nil // err, if any, is the client going away
}

// errReader remembers its reader's error, to tell it from the writer's.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func (s *Server) v1Upload(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "upload")
	if err != nil {
		return err
	}
	defer release()
	if r.ContentLength > s.opts.MaxFileBytes {
		return errorf(wire.CodeTooLarge, "file of %d bytes is larger than the server's limit of %d bytes", r.ContentLength, s.opts.MaxFileBytes)
	}
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxFileBytes)
	if err := e.sb.FileSystem().Write(r.Context(), path, body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(wire.CodeTooLarge, "file is larger than the server's limit of %d bytes; the old content was kept", s.opts.MaxFileBytes)
		}
		s.gone(e, err)
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) v1Remove(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "remove")
	if err != nil {
		return err
	}
	defer release()
	if err := e.sb.FileSystem().RemoveAll(r.Context(), path); err != nil {
		s.gone(e, err)
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) v1Mkdir(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "mkdir")
	if err != nil {
		return err
	}
	defer release()
	if err := e.sb.FileSystem().MkdirAll(r.Context(), path); err != nil {
		s.gone(e, err)
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func fileInfoOf(fi *compute.FileInfo) wire.FileInfo {
	return wire.FileInfo{Name: fi.Name, Path: fi.Path, IsDir: fi.IsDir, Size: fi.Size, Mode: fi.Mode, ModTime: fi.ModTime.UTC()}
}

func (s *Server) v1Stat(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "stat")
	if err != nil {
		return err
	}
	defer release()
	fi, err := e.sb.FileSystem().Stat(r.Context(), path)
	if err != nil {
		s.gone(e, err)
		return err
	}
	writeJSON(w, http.StatusOK, fileInfoOf(fi))
	return nil
}

func (s *Server) v1ReadDir(w http.ResponseWriter, r *http.Request) error {
	e, release, path, err := s.sandboxFS(r, "readdir")
	if err != nil {
		return err
	}
	defer release()
	list, err := e.sb.FileSystem().ReadDir(r.Context(), path)
	if err != nil {
		s.gone(e, err)
		return err
	}
	if err := s.checkListing(path, list); err != nil {
		return err
	}
	rep := newReply(w, http.StatusOK)
	rep.raw(`{"files":[`)
	for i := range list {
		if i > 0 {
			rep.raw(`,`)
		}
		fi := fileInfoOf(&list[i])
		rep.value(&fi)
	}
	rep.raw(`]}`)
	rep.end()
	return nil
}

// findProc returns a running process of the sandbox in the request path.
func (s *Server) findProc(r *http.Request, op string) (*proc, error) {
	id := r.PathValue("id")
	annotate(r, op, id)
	pid, err := strconv.ParseInt(r.PathValue("pid"), 10, 64)
	if err != nil {
		return nil, badRequest("process id %q is not a number", r.PathValue("pid"))
	}
	if s.lookup(r.Context(), id) == nil {
		return nil, sandboxNotFound(id)
	}
	s.mu.Lock()
	pc := s.procs[pid]
	s.mu.Unlock()
	if pc == nil || pc.sandbox != id {
		return nil, errorf(wire.CodeProcessNotFound, "process %d of sandbox %s not found (it may have exited)", pid, id)
	}
	return pc, nil
}

func (s *Server) v1Kill(w http.ResponseWriter, r *http.Request) error {
	pc, err := s.findProc(r, "kill")
	if err != nil {
		return err
	}
	if err := pc.p.Kill(); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) v1Stdin(w http.ResponseWriter, r *http.Request) error {
	pc, err := s.findProc(r, "stdin")
	if err != nil {
		return err
	}
	if pc.stdin == nil {
		return errorf(wire.CodeConflict, "process %d was not started with stdinStream", pc.pid)
	}
	if !pc.stdinTaken.CompareAndSwap(false, true) {
		return errorf(wire.CodeConflict, "the standard input of process %d is already being sent", pc.pid)
	}
	// Copy until the body ends (EOF for the process) or the process exits
	// (its end of the pipe is closed; the rest of the body is not read).
	_, err = io.CopyBuffer(pc.stdin, r.Body, make([]byte, 64<<10))
	pc.stdin.CloseWithError(err)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) v1Processes(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	annotate(r, "processes", id)
	_, release, err := s.acquire(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()
	out := wire.ProcessList{Processes: []wire.ProcessInfo{}}
	s.mu.Lock()
	for _, pc := range s.procs {
		if pc.sandbox == id {
			out.Processes = append(out.Processes, wire.ProcessInfo{PID: pc.pid, Argv: pc.argv, StartedAt: pc.started.UTC(), Attached: pc.attached})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out.Processes, func(a, b wire.ProcessInfo) int { return cmp.Compare(a.PID, b.PID) })
	writeJSON(w, http.StatusOK, out)
	return nil
}
