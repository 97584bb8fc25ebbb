package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/computesdk-go/compute"
)

// Limits on what one call gives back besides text.
const (
	maxImages      = 10       // images of one run_code
	maxImageBytes  = 8 << 20  // all images of one call together
	maxImageFile   = 5 << 20  // the largest image read_file shows as one
	maxFileRead    = 16 << 20 // what read_file reads of a file at most
	unlimitedCatch = 16 << 20 // each end kept of a stream with MaxOutput < 0
)

// addTool registers a tool whose handler runs with the session's state,
// on a context that Close ends, and whose panics become error results.
func addTool[In, Out any](s *Server, t *sdk.Tool, h func(context.Context, *session, In) (*sdk.CallToolResult, Out, error)) {
	sdk.AddTool(s.srv, t, func(ctx context.Context, req *sdk.CallToolRequest, in In) (res *sdk.CallToolResult, out Out, err error) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("mcp: tool panicked", "tool", t.Name, "panic", fmt.Sprint(v))
				var zero Out
				res, out, err = nil, zero, fmt.Errorf("internal error in %s (logged by the server); try again, or differently", t.Name)
			}
		}()
		st := s.attach(req.Session)
		if st == nil {
			var zero Out
			return nil, zero, errors.New("the MCP server is shutting down")
		}
		ctx, cancel := s.callContext(ctx)
		defer cancel()
		return h(ctx, st, in)
	})
}

func (s *Server) addTools() {
	limit := fmt.Sprintf("Text output is capped at %d characters per call; what is cut from the middle is replaced by a note.", s.opts.MaxOutput)
	if s.opts.MaxOutput < 0 {
		limit = ""
	}
	runLimit := ""
	if s.opts.RunTimeout > 0 {
		runLimit = fmt.Sprintf(" A cell running longer than %v is interrupted (the interpreter keeps its state).", s.opts.RunTimeout)
	}

	codeSchema, err := jsonschema.For[runCodeIn](nil)
	if err != nil {
		panic(err)
	}
	codeSchema.Properties["language"].Enum = []any{"python", "javascript"}
	addTool(s, &sdk.Tool{
		Name:  "run_code",
		Title: "Run code",
		Description: "Run Python or JavaScript code in a persistent interpreter in a sandbox, like a cell of a Jupyter notebook: " +
			"variables, imports and functions defined by one call are there in the next call of the same language in the same sandbox. " +
			"Returns what the code printed (stdout, stderr), the value of its last expression, and each chart or image it displayed " +
			"(matplotlib plt.show(), IPython.display) as an image. If the code raises, the result is an error with the traceback; " +
			"the interpreter keeps its state. Files are shared with run_command, read_file and write_file." + runLimit + " " + limit,
		InputSchema: codeSchema,
	}, s.runCode)

	addTool(s, &sdk.Tool{
		Name:  "run_command",
		Title: "Run a shell command",
		Description: "Run a shell command (/bin/sh -c, so pipes, redirections, && and variables work) in a sandbox and wait for it. " +
			"Returns its stdout, stderr and exit code. Use it to install packages (pip install), run programs and tests, " +
			"inspect files (ls, grep, head). A command that needs input gets none; background processes (cmd &) are killed when it ends. " + limit,
	}, s.runCommand)

	addTool(s, &sdk.Tool{
		Name:        "write_file",
		Title:       "Write a file",
		Description: "Write text to a file in a sandbox, replacing it if it exists and creating its parent directories. Relative paths start at the sandbox's working directory, where run_code and run_command run.",
	}, s.writeFile)

	addTool(s, &sdk.Tool{
		Name:        "read_file",
		Title:       "Read a file",
		Description: "Read a text file from a sandbox. A binary file is not shown as text: the answer says its type and size (and shows an image as an image). " + limit,
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true},
	}, s.readFile)

	addTool(s, &sdk.Tool{
		Name:        "list_files",
		Title:       "List a directory",
		Description: "List the entries of a directory in a sandbox: names, kinds (file or directory) and sizes. Without path, the sandbox's working directory.",
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true},
	}, s.listFiles)

	addTool(s, &sdk.Tool{
		Name:  "create_sandbox",
		Title: "Create a sandbox",
		Description: "Create a new, separate sandbox (an isolated Linux machine) and return its id, to pass as sandbox_id to the other tools. " +
			"Only needed for a second machine or different settings: the other tools create this session's default sandbox by themselves. " +
			"Every sandbox of the session is destroyed when the session ends.",
	}, s.createSandbox)

	yes := true
	addTool(s, &sdk.Tool{
		Name:        "destroy_sandbox",
		Title:       "Destroy a sandbox",
		Description: "Destroy a sandbox of this session with everything in it (files, processes, variables). Destroying the default sandbox makes the next call without sandbox_id create a fresh one.",
		Annotations: &sdk.ToolAnnotations{DestructiveHint: &yes},
	}, s.destroySandbox)

	addTool(s, &sdk.Tool{
		Name:        "list_sandboxes",
		Title:       "List sandboxes",
		Description: "List this session's sandboxes: ids, which is the default, age, network, and the languages with a live interpreter.",
		Annotations: &sdk.ToolAnnotations{ReadOnlyHint: true},
	}, s.listSandboxes)
}

// --- run_code ---

type runCodeIn struct {
	Code      string `json:"code" jsonschema:"the code to run: one or more statements; the value of the last expression is returned, as in a notebook"`
	Language  string `json:"language,omitempty" jsonschema:"python (the default) or javascript (Node.js)"`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema:"the sandbox to use, from create_sandbox; omit it to use this session's default sandbox (created on first use)"`
	ContextID string `json:"context_id,omitempty" jsonschema:"a code context (interpreter) of the sandbox, as an earlier run_code returned it; omit it to use the sandbox's persistent interpreter for the language"`
}

type runCodeOut struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox the code ran in"`
	ContextID string `json:"context_id" jsonschema:"the interpreter it ran in"`
	Language  string `json:"language" jsonschema:"python or javascript"`
	Error     string `json:"error,omitempty" jsonschema:"the exception the code raised, if it did"`
}

func languageOf(rt compute.Runtime) string {
	if rt == compute.Node {
		return "javascript"
	}
	return "python"
}

func (s *Server) runCode(ctx context.Context, st *session, in runCodeIn) (*sdk.CallToolResult, runCodeOut, error) {
	var out runCodeOut
	var rt compute.Runtime
	switch in.Language {
	case "":
	case "python":
		rt = compute.Python
	case "javascript":
		rt = compute.Node
	default:
		return nil, out, fmt.Errorf("unknown language %q: use python or javascript", in.Language)
	}
	if strings.TrimSpace(in.Code) == "" {
		return nil, out, errors.New("code is empty: give the code to run")
	}
	b, err := st.box(ctx, in.SandboxID)
	if err != nil {
		return nil, out, err
	}
	cc, err := st.codeContext(ctx, b, rt, in.ContextID)
	if err != nil {
		return nil, out, st.gone(b, err)
	}
	info := cc.Info()
	out = runCodeOut{SandboxID: b.sb.ID(), ContextID: info.ID, Language: languageOf(info.Runtime)}

	stdout, stderr := s.newCapture(), s.newCapture()
	var (
		resMu   sync.Mutex
		results []compute.Output
	)
	timeout := max(s.opts.RunTimeout, 0)
	exec, err := cc.Run(ctx, in.Code, &compute.CellOptions{
		Timeout: timeout,
		Stdout:  stdout,
		Stderr:  stderr,
		OnResult: func(o compute.Output) {
			resMu.Lock()
			results = append(results, o)
			resMu.Unlock()
		},
		MaxOutput: -1, // kept here, head and tail
	})
	var notes []string
	isError := false
	switch {
	case err == nil:
	case errors.Is(err, compute.ErrTimeout):
		isError = true
		notes = append(notes, fmt.Sprintf("The cell ran longer than %v and was interrupted; the interpreter keeps its state. Split the work into shorter steps, or run long jobs with run_command in the background writing to a file.", timeout))
	case errors.Is(err, compute.ErrContextDied):
		isError = true
		if in.ContextID == "" {
			b.dropContext(cc)
		}
		notes = append(notes, fmt.Sprintf("The %s interpreter died (it exited, or was killed, e.g. for running out of memory): its variables are lost; the next call starts a fresh one. (%v)", out.Language, err))
	case ctx.Err() != nil:
		return nil, out, err
	default:
		return nil, out, st.gone(b, err)
	}
	if exec != nil && exec.Error != nil {
		isError = true
		out.Error = exec.Error.String()
	}

	// The text: what was printed, the displays' text, the result, the
	// error; images beside it.
	pieces := []piece{}
	labels := []string{}
	add := func(label, name string, text string, dropped int64) {
		if text == "" && dropped == 0 {
			return
		}
		labels = append(labels, label)
		pieces = append(pieces, piece{name: name, text: text, dropped: dropped})
	}
	t, d := stdout.stream()
	add("[stdout]", "stdout", t, d)
	t, d = stderr.stream()
	add("[stderr]", "stderr", t, d)
	resMu.Lock()
	defer resMu.Unlock()
	var images []sdk.Content
	imageBytes, skipped := 0, 0
	var main *compute.Output
	for i := range results {
		o := &results[i]
		if o.IsMain {
			main = o
			continue
		}
		img, mime := o.PNG, "image/png"
		if len(img) == 0 {
			img, mime = o.JPEG, "image/jpeg"
		}
		switch {
		case len(img) > 0 && len(images) < maxImages && imageBytes+len(img) <= maxImageBytes:
			images = append(images, &sdk.ImageContent{Data: img, MIMEType: mime})
			imageBytes += len(img)
			add("[display]", "a display output", fmt.Sprintf("(%s image, %d bytes, attached)", mime, len(img)), 0)
		case len(img) > 0:
			skipped++
		default:
			add("[display]", "a display output", displayText(o), 0)
		}
	}
	if main != nil {
		add("[result]", "the result", displayText(main), 0)
	}
	if exec != nil && exec.Error != nil {
		tb := stripANSI(exec.Error.Traceback)
		if !strings.Contains(tb, exec.Error.Name) {
			tb = strings.TrimRight(tb, "\n") + "\n" + exec.Error.String()
		}
		add("[error]", "the traceback", strings.TrimSpace(tb), 0)
	}
	if skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d more images were not attached (at most %d images, %d MiB, per call).", skipped, maxImages, maxImageBytes>>20))
	}
	texts, _ := fit(s.opts.MaxOutput, pieces...)
	var sb strings.Builder
	for i, text := range texts {
		if len(texts) == 1 && labels[i] == "[stdout]" && len(notes) == 0 {
			sb.WriteString(text) // the common case: just what it printed
			break
		}
		sb.WriteString(labels[i])
		sb.WriteString("\n")
		sb.WriteString(strings.TrimRight(text, "\n"))
		sb.WriteString("\n")
	}
	for _, n := range notes {
		sb.WriteString("[note] " + n + "\n")
	}
	if sb.Len() == 0 {
		sb.WriteString("(the code ran, and printed and returned nothing)")
	}
	content := append([]sdk.Content{&sdk.TextContent{Text: sb.String()}}, images...)
	return &sdk.CallToolResult{Content: content, IsError: isError}, out, nil
}

// displayText is the text form of a display output.
func displayText(o *compute.Output) string {
	switch {
	case o.Text != "":
		return o.Text
	case o.Markdown != "":
		return o.Markdown
	case len(o.JSON) > 0:
		return string(o.JSON)
	case o.LaTeX != "":
		return o.LaTeX
	case o.HTML != "":
		return o.HTML
	case o.SVG != "":
		return fmt.Sprintf("(an SVG image, %d bytes, not shown)", len(o.SVG))
	case len(o.PDF) > 0:
		return fmt.Sprintf("(a PDF, %d bytes, not shown)", len(o.PDF))
	}
	return "(an output without a text form)"
}

// newCapture returns a capture that keeps enough of each end of a stream
// for MaxOutput characters.
func (s *Server) newCapture() *capture {
	if s.opts.MaxOutput < 0 {
		return newCapture(unlimitedCatch)
	}
	return newCapture(4 * s.opts.MaxOutput)
}

// --- run_command ---

type runCommandIn struct {
	Command        string  `json:"command" jsonschema:"the shell command line, run with /bin/sh -c"`
	SandboxID      string  `json:"sandbox_id,omitempty" jsonschema:"the sandbox to use, from create_sandbox; omit it to use this session's default sandbox (created on first use)"`
	Cwd            string  `json:"cwd,omitempty" jsonschema:"the directory to run in (absolute, or relative to the sandbox's working directory); default: the working directory"`
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty" jsonschema:"kill the command after this many seconds (exit code 124); default: the server's limit"`
}

type runCommandOut struct {
	Stdout   string `json:"stdout" jsonschema:"what the command wrote to standard output (capped; a note marks a cut)"`
	Stderr   string `json:"stderr" jsonschema:"what it wrote to standard error (capped)"`
	ExitCode int    `json:"exit_code" jsonschema:"its exit status: 0 for success; 124 when killed by its timeout; 127 when not found"`
}

func (s *Server) runCommand(ctx context.Context, st *session, in runCommandIn) (*sdk.CallToolResult, runCommandOut, error) {
	var out runCommandOut
	if strings.TrimSpace(in.Command) == "" {
		return nil, out, errors.New("command is empty: give the shell command line to run")
	}
	if in.TimeoutSeconds < 0 {
		return nil, out, fmt.Errorf("timeout_seconds must not be negative, got %v", in.TimeoutSeconds)
	}
	timeout := max(s.opts.RunTimeout, 0)
	if in.TimeoutSeconds > 0 {
		timeout = time.Duration(in.TimeoutSeconds * float64(time.Second))
	}
	b, err := st.box(ctx, in.SandboxID)
	if err != nil {
		return nil, out, err
	}
	stdout, stderr := s.newCapture(), s.newCapture()
	res, err := b.sb.RunShell(ctx, in.Command, &compute.RunOptions{
		Dir:       in.Cwd,
		Timeout:   timeout,
		Stdout:    stdout,
		Stderr:    stderr,
		MaxOutput: -1,
	})
	var note string
	switch {
	case err == nil:
	case errors.Is(err, compute.ErrTimeout) && res != nil && ctx.Err() == nil:
		note = fmt.Sprintf("The command ran longer than %v and was killed (exit code %d). Give it more with timeout_seconds, or run it in the background (nohup CMD > out.log 2>&1 &) and read the log later.", timeout, res.ExitCode)
	case errors.Is(err, compute.ErrOutOfMemory) && res != nil:
		note = "The command was killed for going over the sandbox's memory."
	case errors.Is(err, fs.ErrNotExist) && in.Cwd != "":
		return nil, out, fmt.Errorf("cannot run in %q: no such directory (%v)", in.Cwd, err)
	case ctx.Err() != nil:
		return nil, out, err
	default:
		return nil, out, st.gone(b, err)
	}
	t1, d1 := stdout.stream()
	t2, d2 := stderr.stream()
	texts, _ := fit(s.opts.MaxOutput, piece{name: "stdout", text: t1, dropped: d1}, piece{name: "stderr", text: t2, dropped: d2})
	out = runCommandOut{Stdout: texts[0], Stderr: texts[1], ExitCode: res.ExitCode}
	var sb strings.Builder
	fmt.Fprintf(&sb, "exit code: %d\n", res.ExitCode)
	if out.Stdout != "" {
		sb.WriteString("[stdout]\n" + strings.TrimRight(out.Stdout, "\n") + "\n")
	}
	if out.Stderr != "" {
		sb.WriteString("[stderr]\n" + strings.TrimRight(out.Stderr, "\n") + "\n")
	}
	if out.Stdout == "" && out.Stderr == "" {
		sb.WriteString("(no output)\n")
	}
	if note != "" {
		sb.WriteString("[note] " + note + "\n")
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: sb.String()}}}, out, nil
}

// --- files ---

type writeFileIn struct {
	Path      string `json:"path" jsonschema:"the file's path: absolute, or relative to the sandbox's working directory"`
	Content   string `json:"content" jsonschema:"the text to write (the whole file)"`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema:"the sandbox to use, from create_sandbox; omit it to use this session's default sandbox (created on first use)"`
}

func (s *Server) writeFile(ctx context.Context, st *session, in writeFileIn) (*sdk.CallToolResult, any, error) {
	if in.Path == "" {
		return nil, nil, errors.New("path is empty: give the file's path")
	}
	b, err := st.box(ctx, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	fsys := b.sb.FileSystem()
	if dir := path.Dir(in.Path); dir != "." && dir != "/" {
		if err := fsys.MkdirAll(ctx, dir); err != nil {
			return nil, nil, st.gone(b, fileError(err, in.Path))
		}
	}
	if err := fsys.WriteFile(ctx, in.Path, []byte(in.Content)); err != nil {
		return nil, nil, st.gone(b, fileError(err, in.Path))
	}
	return text(fmt.Sprintf("wrote %d bytes to %s in sandbox %s", len(in.Content), in.Path, b.sb.ID())), nil, nil
}

type readFileIn struct {
	Path      string `json:"path" jsonschema:"the file's path: absolute, or relative to the sandbox's working directory"`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema:"the sandbox to use, from create_sandbox; omit it to use this session's default sandbox (created on first use)"`
}

func (s *Server) readFile(ctx context.Context, st *session, in readFileIn) (*sdk.CallToolResult, any, error) {
	if in.Path == "" {
		return nil, nil, errors.New("path is empty: give the file's path")
	}
	b, err := st.box(ctx, in.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	fsys := b.sb.FileSystem()
	fi, err := fsys.Stat(ctx, in.Path)
	if err != nil {
		return nil, nil, st.gone(b, fileError(err, in.Path))
	}
	if fi.IsDir {
		return nil, nil, fmt.Errorf("%s is a directory: list_files lists it", in.Path)
	}
	r, err := fsys.Open(ctx, in.Path)
	if err != nil {
		return nil, nil, st.gone(b, fileError(err, in.Path))
	}
	defer r.Close()
	c := s.newCapture()
	n, err := io.Copy(c, io.LimitReader(r, maxFileRead))
	if err != nil {
		return nil, nil, st.gone(b, fileError(err, in.Path))
	}
	content, dropped := c.stream()
	size := max(fi.Size, n)
	head := content[:min(len(content), 8192)]
	if isBinary(head) {
		mime := http.DetectContentType([]byte(head))
		msg := fmt.Sprintf("%s is a binary file (%s, %d bytes): not shown as text. Inspect it with run_command (file, xxd | head, unzip -l, ...) or run_code.", in.Path, mime, size)
		switch mime {
		case "image/png", "image/jpeg", "image/gif", "image/webp":
			if size <= maxImageFile {
				data, err := fsys.ReadFile(ctx, in.Path)
				if err == nil {
					return &sdk.CallToolResult{Content: []sdk.Content{
						&sdk.TextContent{Text: fmt.Sprintf("%s is an image (%s, %d bytes), attached.", in.Path, mime, len(data))},
						&sdk.ImageContent{Data: data, MIMEType: mime},
					}}, nil, nil
				}
			}
		}
		return text(msg), nil, nil
	}
	name := "the file"
	if size > n {
		// The rest was never read: say so as a cut at the end.
		content += fmt.Sprintf("\n[... the file goes on: %d of its %d bytes were read ...]\n", n, size)
	}
	texts, _ := fit(s.opts.MaxOutput, piece{name: name, text: content, dropped: dropped})
	if texts[0] == "" {
		return text(fmt.Sprintf("%s is empty (0 bytes)", in.Path)), nil, nil
	}
	return text(texts[0]), nil, nil
}

// isBinary reports whether the start of a file is not text: a NUL byte,
// or bytes that are not UTF-8 (a rune cut at the end is allowed).
func isBinary(head string) bool {
	if strings.IndexByte(head, 0) >= 0 {
		return true
	}
	for i := 0; i < len(head); {
		r, n := utf8.DecodeRuneInString(head[i:])
		if r == utf8.RuneError && n <= 1 {
			return len(head)-i >= utf8.UTFMax
		}
		i += n
	}
	return false
}

// fileError says what a file operation's error means for the model.
func fileError(err error, name string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no such file or directory: %s (relative paths start at the sandbox's working directory; list_files shows what is there)", name)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied: %s (write under the working directory or /tmp)", name)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s: something is in the way (a file where a directory is needed, or the reverse): %v", name, err)
	}
	return err
}

type listFilesIn struct {
	Path      string `json:"path,omitempty" jsonschema:"the directory to list; default: the sandbox's working directory"`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema:"the sandbox to use, from create_sandbox; omit it to use this session's default sandbox (created on first use)"`
}

type fileEntry struct {
	Name string `json:"name"`
	Kind string `json:"kind" jsonschema:"file or directory"`
	Size int64  `json:"size" jsonschema:"in bytes"`
}

type listFilesOut struct {
	Path    string      `json:"path"`
	Entries []fileEntry `json:"entries"`
	// Omitted counts the entries left out to stay under the output cap.
	Omitted int `json:"omitted,omitempty" jsonschema:"entries left out to stay under the output cap"`
}

func (s *Server) listFiles(ctx context.Context, st *session, in listFilesIn) (*sdk.CallToolResult, listFilesOut, error) {
	out := listFilesOut{Path: in.Path, Entries: []fileEntry{}}
	if out.Path == "" {
		out.Path = "."
	}
	b, err := st.box(ctx, in.SandboxID)
	if err != nil {
		return nil, out, err
	}
	fsys := b.sb.FileSystem()
	list, err := fsys.ReadDir(ctx, out.Path)
	if err != nil {
		if fi, serr := fsys.Stat(ctx, out.Path); serr == nil && !fi.IsDir {
			return nil, out, fmt.Errorf("%s is a file (%d bytes), not a directory: read_file reads it", out.Path, fi.Size)
		}
		return nil, out, st.gone(b, fileError(err, out.Path))
	}
	slices.SortFunc(list, func(a, b compute.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s (%d entries):\n", out.Path, len(list))
	for i, fi := range list {
		e := fileEntry{Name: fi.Name, Kind: "file", Size: fi.Size}
		line := fmt.Sprintf("%s  %d bytes\n", fi.Name, fi.Size)
		if fi.IsDir {
			e.Kind, line = "directory", fi.Name+"/\n"
		}
		if s.opts.MaxOutput >= 0 && sb.Len()+len(line) > s.opts.MaxOutput {
			out.Omitted = len(list) - i
			fmt.Fprintf(&sb, "[... %d more entries not shown: the answer holds at most %d characters; narrow it with run_command (ls PATH | grep ...) ...]\n", out.Omitted, s.opts.MaxOutput)
			break
		}
		sb.WriteString(line)
		out.Entries = append(out.Entries, e)
	}
	if len(list) == 0 {
		sb.WriteString("(empty)\n")
	}
	return text(sb.String()), out, nil
}

// --- sandboxes ---

type createSandboxIn struct {
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty" jsonschema:"the sandbox's lifetime in seconds, after which it is destroyed; default: the server's"`
	Network        *bool   `json:"network,omitempty" jsonschema:"true gives the sandbox network access (if this server allows it); false or omitted: the server's default (usually none)"`
	Image          string  `json:"image,omitempty" jsonschema:"the OCI image to create it from, as a registry reference (python:3.13-slim, ghcr.io/org/img:tag), if this server allows it; omitted: the server's default image"`
}

type createSandboxOut struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the new sandbox's id, for sandbox_id"`
}

func (s *Server) createSandbox(ctx context.Context, st *session, in createSandboxIn) (*sdk.CallToolResult, createSandboxOut, error) {
	var out createSandboxOut
	opts := *s.opts.Create
	if in.TimeoutSeconds < 0 {
		return nil, out, fmt.Errorf("timeout_seconds must not be negative, got %v", in.TimeoutSeconds)
	}
	if in.TimeoutSeconds > 0 {
		opts.Timeout = time.Duration(in.TimeoutSeconds * float64(time.Second))
	}
	if in.Network != nil {
		switch {
		case *in.Network && !s.opts.AllowNetwork:
			return nil, out, errors.New("this server gives sandboxes no network access (its operator can allow it: compute mcp --network, compute serve --allow-network with a token); create the sandbox without network")
		case *in.Network:
			opts.Network, opts.NetworkAllow = compute.NetworkHost, nil
		default:
			opts.Network, opts.NetworkAllow = compute.NetworkNone, nil
		}
	}
	if in.Image != "" && in.Image != opts.Image {
		switch {
		case isLocalImage(in.Image):
			return nil, out, fmt.Errorf("image %q names files on the server's machine, which are not the model's to choose: name a registry image (python:3.13-slim) or omit image", in.Image)
		case !s.opts.AllowImages:
			return nil, out, errors.New("this server does not let the model choose images (its operator can allow it: compute mcp --allow-images, compute serve --allow-images); create the sandbox without image")
		}
		opts.Image = in.Image
	}
	b, err := st.create(ctx, opts)
	if err != nil {
		return nil, out, fmt.Errorf("creating a sandbox: %w", err)
	}
	out.SandboxID = b.sb.ID()
	return text(fmt.Sprintf("created sandbox %s (%s, lifetime %v). Pass sandbox_id %q to the other tools to use it; it is destroyed by destroy_sandbox or when this session ends.",
		out.SandboxID, networkText(b.network), b.timeout, out.SandboxID)), out, nil
}

// isLocalImage reports whether an image reference names files on this
// machine rather than a registry.
func isLocalImage(image string) bool {
	for _, prefix := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if strings.HasPrefix(image, prefix) {
			return true
		}
	}
	return false
}

func networkText(n compute.Network) string {
	switch n {
	case compute.NetworkNone:
		return "no network"
	case compute.NetworkHost:
		return "network access"
	}
	return "the provider's default network"
}

type destroySandboxIn struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox to destroy, from create_sandbox or list_sandboxes"`
}

func (s *Server) destroySandbox(ctx context.Context, st *session, in destroySandboxIn) (*sdk.CallToolResult, any, error) {
	if in.SandboxID == "" {
		return nil, nil, errors.New("sandbox_id is empty: give the id of the sandbox to destroy (list_sandboxes lists them)")
	}
	if err := st.destroy(ctx, in.SandboxID); err != nil {
		return nil, nil, err
	}
	return text("destroyed sandbox " + in.SandboxID), nil, nil
}

type listSandboxesIn struct{}

type sandboxEntry struct {
	SandboxID string   `json:"sandbox_id"`
	Default   bool     `json:"default" jsonschema:"whether calls without sandbox_id use it"`
	CreatedAt string   `json:"created_at" jsonschema:"RFC 3339"`
	Network   string   `json:"network"`
	Image     string   `json:"image,omitempty"`
	Languages []string `json:"languages" jsonschema:"the languages with a live persistent interpreter"`
}

type listSandboxesOut struct {
	Sandboxes []sandboxEntry `json:"sandboxes"`
}

func (s *Server) listSandboxes(ctx context.Context, st *session, _ listSandboxesIn) (*sdk.CallToolResult, listSandboxesOut, error) {
	out := listSandboxesOut{Sandboxes: []sandboxEntry{}}
	boxes, def := st.list()
	var sb strings.Builder
	if len(boxes) == 0 {
		sb.WriteString("this session has no sandboxes yet: the first tool call without sandbox_id creates its default one\n")
	}
	for _, b := range boxes {
		e := sandboxEntry{SandboxID: b.sb.ID(), Default: b == def, CreatedAt: b.created.UTC().Format(time.RFC3339), Network: networkText(b.network), Image: b.image, Languages: []string{}}
		b.ctxMu.Lock()
		for rt := range b.contexts {
			e.Languages = append(e.Languages, languageOf(rt))
		}
		b.ctxMu.Unlock()
		slices.Sort(e.Languages)
		out.Sandboxes = append(out.Sandboxes, e)
		fmt.Fprintf(&sb, "%s", e.SandboxID)
		if e.Default {
			sb.WriteString(" (default)")
		}
		fmt.Fprintf(&sb, ": created %s ago, %s", time.Since(b.created).Round(time.Second), e.Network)
		if e.Image != "" {
			fmt.Fprintf(&sb, ", image %s", e.Image)
		}
		if len(e.Languages) > 0 {
			fmt.Fprintf(&sb, ", interpreters: %s", strings.Join(e.Languages, ", "))
		}
		sb.WriteString("\n")
	}
	return text(sb.String()), out, nil
}

func text(s string) *sdk.CallToolResult {
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
}
