package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// The seed's actions.
const (
	actionCreate     = "compute.sandbox.create"
	actionList       = "compute.sandbox.list"
	actionDestroy    = "compute.sandbox.destroy"
	actionGetInfo    = "compute.sandbox.getInfo"
	actionRunCode    = "compute.sandbox.runCode"
	actionRunCommand = "compute.sandbox.runCommand"
	actionReadFile   = "compute.sandbox.filesystem.readFile"
	actionWriteFile  = "compute.sandbox.filesystem.writeFile"
	actionMkdir      = "compute.sandbox.filesystem.mkdir"
	actionReaddir    = "compute.sandbox.filesystem.readdir"
	actionExists     = "compute.sandbox.filesystem.exists"
	actionRemove     = "compute.sandbox.filesystem.remove"
)

// seedRequest is the seed's ComputeRequest. Pointers tell a missing field
// from an empty one where the seed does.
type seedRequest struct {
	Action    json.RawMessage `json:"action"`
	SandboxID string          `json:"sandboxId"`
	Code      *string         `json:"code"`
	Command   *string         `json:"command"`
	Args      []string        `json:"args"`
	Runtime   string          `json:"runtime"`
	Path      *string         `json:"path"`
	Content   *string         `json:"content"`
	// Encoding is this server's addition: "base64" makes readFile and
	// writeFile move any bytes.
	Encoding       string              `json:"encoding"`
	Options        *seedCreateOptions  `json:"options"`
	CommandOptions *seedCommandOptions `json:"commandOptions"`
}

type seedCreateOptions struct {
	Runtime string `json:"runtime"`
	// Timeout is the sandbox's lifetime in milliseconds.
	Timeout   float64 `json:"timeout"`
	SandboxID string  `json:"sandboxId"`
	// Image is this server's addition (the TypeScript SDK's
	// CreateSandboxOptions.image): the sandbox's image, under the same
	// rules as the v1 API's.
	Image string `json:"image"`
}

type seedCommandOptions struct {
	Background bool `json:"background"`
}

// action is the action as the seed's error message prints it.
func (r *seedRequest) action() string {
	if len(r.Action) == 0 || string(r.Action) == "null" {
		return "undefined"
	}
	var s string
	if json.Unmarshal(r.Action, &s) == nil {
		return s
	}
	return string(r.Action)
}

// seedResponse is the seed's ComputeResponse. writeSeed writes it, in
// the field order and with the omissions of its JSON names.
type seedResponse struct {
	Success   bool   // success
	Error     string // error, omitted when empty
	SandboxID string // sandboxId
	Provider  string // provider
	Result    *seedResult
	Info      *seedInfo
	// FileContent is the file of readFile (fileContent), in base64 when
	// Encoding is "base64".
	FileContent []byte
	Encoding    string
	Files       *[]seedFile
	Exists      *bool
	Sandboxes   *[]seedSandbox
}

// seedResult is the seed's result object.
type seedResult struct {
	// Stdout and Stderr are what the reply holds of the output: at most
	// MaxOutputBytes of each once encoded.
	Stdout, Stderr []byte
	ExitCode       int
	// ExecutionTime is in milliseconds.
	ExecutionTime int64
	IsBackground  bool
	PID           int64
	// Truncated is this server's addition: output past MaxOutputBytes was
	// dropped.
	Truncated bool
}

// writeSeed writes a seed reply, streaming its bulk fields (output, file
// content, lists) so that the server never holds their JSON form.
func writeSeed(w http.ResponseWriter, status int, resp *seedResponse) {
	r := newReply(w, status)
	r.raw(`{"success":`)
	r.value(resp.Success)
	if resp.Error != "" {
		r.raw(`,"error":`)
		r.value(resp.Error)
	}
	r.raw(`,"sandboxId":`)
	r.value(resp.SandboxID)
	r.raw(`,"provider":`)
	r.value(resp.Provider)
	if res := resp.Result; res != nil {
		r.raw(`,"result":{"stdout":`)
		r.str(res.Stdout)
		r.raw(`,"stderr":`)
		r.str(res.Stderr)
		r.raw(`,"exitCode":`)
		r.value(res.ExitCode)
		r.raw(`,"executionTime":`)
		r.value(res.ExecutionTime)
		if res.IsBackground {
			r.raw(`,"isBackground":true`)
		}
		if res.PID != 0 {
			r.raw(`,"pid":`)
			r.value(res.PID)
		}
		if res.Truncated {
			r.raw(`,"truncated":true`)
		}
		r.raw(`}`)
	}
	if resp.Info != nil {
		r.raw(`,"info":`)
		r.value(resp.Info)
	}
	if resp.FileContent != nil {
		r.raw(`,"fileContent":`)
		if resp.Encoding == "base64" {
			r.base64(resp.FileContent)
		} else {
			r.str(resp.FileContent)
		}
	}
	if resp.Encoding != "" {
		r.raw(`,"encoding":`)
		r.value(resp.Encoding)
	}
	if resp.Files != nil {
		r.raw(`,"files":[`)
		for i := range *resp.Files {
			if i > 0 {
				r.raw(`,`)
			}
			r.value(&(*resp.Files)[i])
		}
		r.raw(`]`)
	}
	if resp.Exists != nil {
		r.raw(`,"exists":`)
		r.value(*resp.Exists)
	}
	if resp.Sandboxes != nil {
		r.raw(`,"sandboxes":`)
		r.value(*resp.Sandboxes) // at most MaxSandboxes short entries
	}
	r.raw(`}`)
	r.end()
}

type seedInfo struct {
	ID        string `json:"id"`
	Provider  string `json:"provider"`
	Runtime   string `json:"runtime"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
	// Timeout is in milliseconds.
	Timeout  int64             `json:"timeout"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type seedFile struct {
	Name         string `json:"name"`
	Path         string `json:"path"`
	IsDirectory  bool   `json:"isDirectory"`
	Size         int64  `json:"size"`
	LastModified string `json:"lastModified"`
}

type seedSandbox struct {
	SandboxID string `json:"sandboxId"`
	Provider  string `json:"provider"`
}

// handleSeed answers the seed's protocol: POST {action, ...}.
func (s *Server) handleSeed(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return errorf(wire.CodeMethodNotAllowed, "Only POST requests are supported")
	}
	var req seedRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	action := req.action()
	annotate(r, action, req.SandboxID)
	resp, err := s.seedAction(r.Context(), &req, action)
	if err != nil {
		return err
	}
	resp.Success = true
	resp.Provider = s.provider
	writeSeed(w, http.StatusOK, resp)
	return nil
}

// seedAction runs one action, in the seed's order of checks: create, list
// and destroy first; every other action needs a sandboxId that names a
// live sandbox, then its own fields.
func (s *Server) seedAction(ctx context.Context, req *seedRequest, action string) (*seedResponse, error) {
	switch action {
	case actionCreate:
		opts := &compute.CreateOptions{Runtime: compute.Python}
		if o := req.Options; o != nil {
			var err error
			if opts.Timeout, err = millis("options.timeout", o.Timeout); err != nil {
				return nil, err
			}
			opts.Runtime = compute.Runtime(o.Runtime)
			opts.Image = o.Image
			if o.SandboxID != "" {
				// Reconnect to a sandbox this server holds.
				_, release, err := s.acquire(ctx, o.SandboxID)
				if err != nil {
					return nil, err
				}
				release()
				return &seedResponse{SandboxID: o.SandboxID}, nil
			}
		}
		e, err := s.create(ctx, opts)
		if err != nil {
			return nil, err
		}
		return &seedResponse{SandboxID: e.sb.ID()}, nil

	case actionList:
		entries, err := s.list(ctx)
		if err != nil {
			return nil, err
		}
		list := make([]seedSandbox, 0, len(entries))
		for _, e := range entries {
			list = append(list, seedSandbox{SandboxID: e.sb.ID(), Provider: s.provider})
		}
		return &seedResponse{SandboxID: "", Sandboxes: &list}, nil

	case actionDestroy:
		if req.SandboxID == "" {
			return nil, badRequest("sandboxId is required for destroy action")
		}
		// An unknown or already destroyed sandbox is no error, as in the
		// seed; a sandbox this server did not create is left alone.
		if err := s.destroyFor(ctx, req.SandboxID); err != nil {
			return nil, err
		}
		return &seedResponse{SandboxID: req.SandboxID}, nil
	}

	if req.SandboxID == "" {
		return nil, badRequest("sandboxId is required for this action")
	}
	e, release, err := s.acquire(ctx, req.SandboxID)
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := s.seedSandboxAction(ctx, e, req, action)
	if err != nil {
		s.gone(e, err)
		return nil, err
	}
	resp.SandboxID = req.SandboxID
	return resp, nil
}

func (s *Server) seedSandboxAction(ctx context.Context, e *entry, req *seedRequest, action string) (*seedResponse, error) {
	sb := e.sb
	switch action {
	case actionGetInfo:
		info, err := sb.Info(ctx)
		if err != nil {
			return nil, err
		}
		rt := info.Runtime
		if rt == "" {
			rt = e.runtime
		}
		return &seedResponse{Info: &seedInfo{
			ID: info.ID, Provider: s.provider, Runtime: string(rt), Status: string(info.Status),
			CreatedAt: isoTime(info.CreatedAt), Timeout: toMillis(info.Timeout), Metadata: info.Metadata,
		}}, nil

	case actionRunCode:
		if req.Code == nil || *req.Code == "" {
			return nil, badRequest("code is required")
		}
		out := s.newOutput()
		res, err := sb.RunCode(ctx, *req.Code, &compute.CodeOptions{Runtime: compute.Runtime(req.Runtime), Stdout: &out.stdout, Stderr: &out.stderr, MaxOutput: -1})
		if err != nil {
			return nil, err
		}
		return &seedResponse{Result: out.result(res)}, nil

	case actionRunCommand:
		if req.Command == nil || *req.Command == "" {
			return nil, badRequest("command is required")
		}
		argv := append([]string{*req.Command}, req.Args...)
		if req.CommandOptions != nil && req.CommandOptions.Background {
			return s.seedBackground(ctx, e, argv)
		}
		out := s.newOutput()
		opts := out.options()
		res, err := sb.Run(ctx, argv, &opts)
		if err != nil {
			return nil, err
		}
		return &seedResponse{Result: out.result(res)}, nil
	}

	var path string
	switch action {
	case actionReadFile, actionWriteFile, actionMkdir, actionReaddir, actionExists, actionRemove:
		if req.Path == nil || *req.Path == "" {
			return nil, badRequest("path is required")
		}
		path = *req.Path
		if err := checkPath(path); err != nil {
			return nil, err
		}
	default:
		return nil, badRequest("Unknown action: %s", action)
	}
	fsys := sb.FileSystem()
	switch action {
	case actionReadFile:
		if err := checkEncoding(req.Encoding); err != nil {
			return nil, err
		}
		return s.seedReadFile(ctx, sb, fsys, path, req.Encoding)

	case actionWriteFile:
		if req.Content == nil {
			return nil, badRequest("content is required")
		}
		if err := checkEncoding(req.Encoding); err != nil {
			return nil, err
		}
		// The content goes to the sandbox from the request's own string,
		// decoded as it is sent: no copy of it is made.
		var data io.Reader = strings.NewReader(*req.Content)
		if req.Encoding == "base64" {
			if _, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, strings.NewReader(*req.Content))); err != nil {
				return nil, badRequest("content is not valid base64: %v", err)
			}
			data = base64.NewDecoder(base64.StdEncoding, data)
		}
		if err := fsys.Write(ctx, path, data); err != nil {
			return nil, err
		}
		return &seedResponse{}, nil

	case actionMkdir:
		if err := fsys.MkdirAll(ctx, path); err != nil {
			return nil, err
		}
		return &seedResponse{}, nil

	case actionReaddir:
		list, err := fsys.ReadDir(ctx, path)
		if err != nil {
			return nil, err
		}
		if err := s.checkListing(path, list); err != nil {
			return nil, err
		}
		files := make([]seedFile, 0, len(list))
		for _, fi := range list {
			files = append(files, seedFile{Name: fi.Name, Path: fi.Path, IsDirectory: fi.IsDir, Size: fi.Size, LastModified: isoTime(fi.ModTime)})
		}
		return &seedResponse{Files: &files}, nil

	case actionExists:
		ok, err := fsys.Exists(ctx, path)
		if err != nil {
			return nil, err
		}
		return &seedResponse{Exists: &ok}, nil

	default: // actionRemove
		if err := fsys.RemoveAll(ctx, path); err != nil {
			return nil, err
		}
		return &seedResponse{}, nil
	}
}

// output captures a command's output for a seed reply: at most
// MaxOutputBytes of each stream, the rest dropped as it arrives.
type output struct {
	stdout, stderr capture
	limit          int
}

func (s *Server) newOutput() *output {
	o := &output{limit: s.opts.MaxOutputBytes}
	o.stdout.max, o.stderr.max = o.limit, o.limit
	return o
}

// options runs a command into the captures; package compute keeps no copy.
func (o *output) options() compute.RunOptions {
	return compute.RunOptions{Stdout: &o.stdout, Stderr: &o.stderr, MaxOutput: -1}
}

// result is the seed's result of res, with the output that fits in the
// reply.
func (o *output) result(res *compute.Result) *seedResult {
	stdout, cutOut := o.stdout.take(o.limit)
	stderr, cutErr := o.stderr.take(o.limit)
	return &seedResult{
		Stdout: stdout, Stderr: stderr, ExitCode: res.ExitCode,
		ExecutionTime: res.Duration.Milliseconds(), Truncated: cutOut || cutErr,
	}
}

func checkEncoding(enc string) error {
	switch enc {
	case "", "utf8", "utf-8", "base64":
		return nil
	}
	return badRequest("unknown encoding %q (want \"utf8\" or \"base64\")", enc)
}

// seedReadFile reads a whole file into the reply. The file, as the reply
// sends it (JSON-escaped text, or base64), must fit in MaxOutputBytes; the
// server holds its raw bytes only.
func (s *Server) seedReadFile(ctx context.Context, sb *compute.Sandbox, fsys *compute.FileSystem, path, enc string) (*seedResponse, error) {
	r, err := fsys.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	limit := s.opts.MaxOutputBytes
	buf := &capture{max: limit}
	if sz, ok := r.(interface{ Size() int64 }); ok && sz.Size() > 0 {
		buf.buf = make([]byte, 0, min(sz.Size(), int64(limit)))
	}
	if _, err := io.Copy(buf, io.LimitReader(r, int64(limit)+1)); err != nil {
		return nil, err
	}
	tooLarge := func(what string) error {
		q := url.Values{"path": {path}}
		return errorf(wire.CodeTooLarge,
			"%s is %s, more than the %d bytes a readFile reply holds; download it with GET %s/sandboxes/%s/files?%s",
			path, what, limit, wire.V1Path, url.PathEscape(sb.ID()), q.Encode())
	}
	if buf.dropped > 0 {
		return nil, tooLarge(fmt.Sprintf("larger than %d bytes", limit))
	}
	if buf.buf == nil {
		buf.buf = []byte{} // an empty file still has a fileContent
	}
	resp := &seedResponse{FileContent: buf.buf}
	size := len(buf.buf)
	var sent int
	if enc == "base64" || !utf8.Valid(buf.buf) {
		// Text that is not UTF-8 would be mangled in a JSON string: send
		// it in base64, and say so.
		resp.Encoding = "base64"
		sent = base64.StdEncoding.EncodedLen(size)
	} else {
		sent = jsonLen(buf.buf)
	}
	if sent > limit {
		return nil, tooLarge(fmt.Sprintf("%d bytes (%d once encoded in the reply)", size, sent))
	}
	return resp, nil
}

// seedBackground starts a command that outlives the request (the seed's
// commandOptions.background): it returns at once with the process's
// handle; the output is discarded.
func (s *Server) seedBackground(ctx context.Context, e *entry, argv []string) (*seedResponse, error) {
	p, err := e.sb.Start(context.WithoutCancel(ctx), argv, &compute.RunOptions{MaxOutput: -1})
	if errors.Is(err, compute.ErrCommandNotFound) {
		// Not started: the result says why, as a foreground run would.
		msg := argv[0] + ": command not found\n"
		return &seedResponse{Result: &seedResult{Stderr: []byte(msg), ExitCode: compute.ExitCodeNotFound}}, nil
	}
	if err != nil {
		return nil, err
	}
	pc := &proc{sandbox: e.sb.ID(), argv: argv, started: time.Now(), p: p}
	pid := s.addProc(pc)
	s.background.add()
	go func() {
		defer s.background.done()
		p.Wait()
		s.removeProc(pid)
	}()
	return &seedResponse{Result: &seedResult{IsBackground: true, PID: pid}}, nil
}
