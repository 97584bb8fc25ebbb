// Package wire holds what a compute server and its clients agree on: the
// paths the server answers, the JSON shapes of its v1 endpoints, the event
// types of an exec stream, and the error codes with their HTTP statuses
// and the errors they stand for (see Code and Err). Package server speaks
// it; package remote is a client that needs nothing else. The server's
// openapi.json documents the same shapes for every other language.
package wire

import (
	"encoding/json"
	"time"

	"github.com/computesdk-go/compute/driver"
)

// Paths a compute server answers. The ComputeSDK request protocol is one
// endpoint; the v1 extensions live under V1Path.
const (
	// ProtocolPath is where the ComputeSDK request protocol, the JSON
	// protocol of the TypeScript handleComputeRequest, is answered (POST).
	ProtocolPath = "/api/compute"
	// V1Path is the prefix of the extension endpoints (streaming, raw file
	// transfer, the filesystem calls package remote needs).
	V1Path = "/api/compute/v1"
	// OpenAPIPath serves the OpenAPI 3 document of both (no token needed).
	OpenAPIPath = "/api/compute/openapi.json"
	// HealthPath answers {"status":"ok"} while the server takes requests,
	// 503 once it is shutting down (no token needed).
	HealthPath = V1Path + "/health"
)

// The JSON shapes of the v1 endpoints. Durations are milliseconds, times ISO-8601 (RFC 3339) in UTC,
// bytes base64 (encoding/json's []byte).

// CreateRequest is the body of POST /api/compute/v1/sandboxes. Every field
// is optional.
type CreateRequest struct {
	// Runtime is "python" or "node": the default runtime for RunCode.
	Runtime string `json:"runtime,omitempty"`
	// Timeout is the sandbox's lifetime in milliseconds; 0 means the
	// provider's default.
	Timeout int64 `json:"timeout,omitempty"`
	// Env is the environment every command starts with.
	Env map[string]string `json:"env,omitempty"`
	// Dir is the default working directory.
	Dir      string            `json:"dir,omitempty"`
	Name     string            `json:"name,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Network is "", "none" or "host"; "host" needs Options.AllowNetwork
	// and a server with a token.
	Network string `json:"network,omitempty"`
	// NetworkAllow lists the "host:port" destinations the sandbox may
	// reach, and only those; it needs Options.AllowNetwork and a server
	// with a token.
	NetworkAllow []string `json:"networkAllow,omitempty"`
	// GPU asks for GPUs in Modal's notation ("T4", "A100:2", "any"); a
	// provider without them answers 501.
	GPU string `json:"gpu,omitempty"`
	// Image is the sandbox's root filesystem, an OCI image reference
	// ("python:3.12-slim", "ghcr.io/org/img:tag", "name@sha256:...");
	// empty means the provider's default. It needs Options.AllowImages;
	// "oci:DIR" and "docker-archive:FILE" (files on the server's machine)
	// also need Options.AllowLocalImages and a server with a token.
	Image string `json:"image,omitempty"`
	// ImageSteps are Dockerfile lines applied on top of Image, which they
	// need ("RUN cmd", "ENV K=V", "WORKDIR dir", "COPY src... dest"; see
	// compute.CreateOptions.ImageSteps), under the same rules as Image.
	ImageSteps []string `json:"imageSteps,omitempty"`
	// ImageFiles are the files COPY steps among ImageSteps copy: the
	// client's build context, as much of it as the steps name (see
	// driver.ImageContextFiles), at most driver.MaxImageContextBytes.
	ImageFiles []ImageFile `json:"imageFiles,omitempty"`
}

// ImageFile is a file or directory of an image's build context.
type ImageFile struct {
	Path string `json:"path"`           // relative, slash-separated
	Mode uint32 `json:"mode"`           // permission bits
	Dir  bool   `json:"dir,omitempty"`  // a directory
	Data []byte `json:"data,omitempty"` // a file's content (base64 in JSON)
}

// SandboxInfo describes a sandbox (GET /api/compute/v1/sandboxes/{id}, and
// the reply to create).
type SandboxInfo struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Name     string `json:"name,omitempty"`
	// Status is "running", "stopped" or "error".
	Status  string `json:"status"`
	Runtime string `json:"runtime,omitempty"`
	// CreatedAt is when the sandbox was created.
	CreatedAt time.Time `json:"createdAt"`
	// Timeout is the sandbox's lifetime from CreatedAt, in milliseconds.
	Timeout  int64             `json:"timeout"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Limits lists the limits the provider enforces, as it words them.
	Limits []string `json:"limits,omitempty"`
}

// NewSandboxInfo returns the v1 description of a sandbox described by
// info.
func NewSandboxInfo(info *driver.Info) SandboxInfo {
	return SandboxInfo{
		ID: info.ID, Provider: info.Provider, Name: info.Name, Status: string(info.Status), Runtime: string(info.Runtime),
		CreatedAt: info.CreatedAt.UTC(), Timeout: toMillis(info.Timeout), Metadata: info.Metadata, Limits: info.Limits,
	}
}

// toMillis is d in milliseconds, rounded up so that a positive duration
// never reads as 0 ("the default").
func toMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// SandboxList is the reply to GET /api/compute/v1/sandboxes.
type SandboxList struct {
	Sandboxes []SandboxInfo `json:"sandboxes"`
}

// ExecRequest is the body of POST /api/compute/v1/sandboxes/{id}/exec.
type ExecRequest struct {
	// Argv is the program and its arguments, never run through a shell.
	Argv []string `json:"argv"`
	// Env is added to the sandbox's environment for this command.
	Env map[string]string `json:"env,omitempty"`
	// Dir is the working directory; relative to the sandbox's default.
	Dir string `json:"dir,omitempty"`
	// Stdin is the whole standard input, when it is small and known up
	// front. Leave it empty and set StdinStream to stream it instead.
	Stdin []byte `json:"stdin,omitempty"`
	// StdinStream says the input follows in a separate request, POST
	// .../processes/{pid}/stdin, whose body is streamed to the process
	// until it ends. Without Stdin or StdinStream the input is empty.
	StdinStream bool `json:"stdinStream,omitempty"`
	// Timeout, in milliseconds, kills the command after this long; the
	// exit event then says timedOut and exit code 124.
	Timeout int64 `json:"timeout,omitempty"`
	// CombineOutput sends stderr into stdout through one pipe (like
	// 2>&1), so that their order is kept; the stream then has stdout
	// events only.
	CombineOutput bool `json:"combineOutput,omitempty"`
}

// Event types of an exec stream.
const (
	// EventStart is the first event: the process runs, Event.PID names it.
	EventStart = "start"
	// EventStdout and EventStderr carry output, in Event.Data, as produced.
	EventStdout = "stdout"
	EventStderr = "stderr"
	// EventExit is the last event of a process that ran to its end.
	EventExit = "exit"
	// EventError ends a stream whose process could not be waited for (the
	// sandbox died, the server is shutting down, the request timed out).
	EventError = "error"
	// EventPing is sent after 15 s of silence, so that proxies keep the
	// connection open; clients ignore it (and any type they do not know).
	EventPing = "ping"
)

// Event is one line of an exec stream (application/x-ndjson).
type Event struct {
	Type string `json:"type"`
	// PID is the server's handle on the process (EventStart); use it for
	// .../processes/{pid}/stdin and .../kill. It is not the process's pid
	// inside the sandbox.
	PID int64 `json:"pid,omitempty"`
	// Data is a chunk of output (EventStdout, EventStderr), base64 in JSON.
	Data []byte `json:"data,omitempty"`
	// ExitCode is set by EventExit: 127 not found, 124 timed out, 128+n
	// killed by signal n.
	ExitCode *int `json:"exitCode,omitempty"`
	// Duration is the process's run time in milliseconds (EventExit).
	Duration int64 `json:"durationMs,omitempty"`
	// TimedOut says ExecRequest.Timeout killed the process (EventExit).
	TimedOut bool `json:"timedOut,omitempty"`
	// Error and Code describe an EventError, as in ErrorResponse; on an
	// EventExit they say why the process was killed when the provider
	// knows (CodeOutOfMemory).
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// ProcessInfo describes a running process (GET .../processes).
type ProcessInfo struct {
	PID       int64     `json:"pid"`
	Argv      []string  `json:"argv"`
	StartedAt time.Time `json:"startedAt"`
	// Attached says a client holds the process's exec stream; a process
	// started by the request protocol's background runCommand has none.
	Attached bool `json:"attached"`
}

// ProcessList is the reply to GET .../processes.
type ProcessList struct {
	Processes []ProcessInfo `json:"processes"`
}

// FileInfo describes a file (GET .../stat, and the entries of GET .../dir).
type FileInfo struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	IsDir bool   `json:"isDir"`
	Size  int64  `json:"size"`
	// Mode holds the permission bits.
	Mode    uint32    `json:"mode"`
	ModTime time.Time `json:"modTime"`
}

// DirList is the reply to GET .../dir.
type DirList struct {
	Files []FileInfo `json:"files"`
}

// ErrorResponse is the body of every v1 error reply.
type ErrorResponse struct {
	// Error is the message, for people.
	Error string `json:"error"`
	// Code is the category, for programs: one of the Code constants.
	Code string `json:"code"`
	// Reason is, for file errors, the cause without the operation and
	// path ("no such file or directory").
	Reason string `json:"reason,omitempty"`
}

// Error codes of ErrorResponse.Code, with their HTTP status (Status) and,
// where one stands for an error of package compute or io/fs, that error
// (Err, Code).
const (
	CodeBadRequest             = "bad_request"             // 400
	CodeUnauthorized           = "unauthorized"            // 401: no or bad token for this server
	CodePermission             = "permission"              // 403: file permission denied
	CodeForbidden              = "forbidden"               // 403: not allowed by the server (network access; a server without a token serves only its machine)
	CodeNotFound               = "not_found"               // 404: no such endpoint
	CodeSandboxNotFound        = "sandbox_not_found"       // 404
	CodeProcessNotFound        = "process_not_found"       // 404
	CodeContextNotFound        = "context_not_found"       // 404: no such code context (or it was closed)
	CodeNotExist               = "not_exist"               // 404: no such file
	CodeMethodNotAllowed       = "method_not_allowed"      // 405
	CodeExist                  = "exist"                   // 409: the file exists
	CodeConflict               = "conflict"                // 409: stdin already attached, ...
	CodeContextDied            = "context_died"            // 409: the code context's interpreter is gone; restart it
	CodeSandboxStopped         = "sandbox_stopped"         // 410
	CodeTooLarge               = "too_large"               // 413: a body, upload or reply past the limits; argv and env the kernel refuses
	CodeCommandNotFound        = "command_not_found"       // 422
	CodeFileError              = "file_error"              // 422: not a directory, is a directory, ...
	CodeSyntaxError            = "syntax_error"            // 422 (runCode of the request protocol)
	CodeOutOfMemory            = "out_of_memory"           // 422 (runCommand, runCode; on an exec stream's exit event)
	CodeLimit                  = "limit"                   // 429: too many live sandboxes
	CodeInternal               = "internal"                // 500
	CodeProviderAuthentication = "provider_authentication" // 500: the provider refused the server's credentials
	CodeMissingCredentials     = "missing_credentials"     // 500: the server has no credentials for its provider
	CodeUnsupported            = "unsupported"             // 501
	CodeUnavailable            = "unavailable"             // 503: shutting down
	CodeTimeout                = "timeout"                 // 504: the request ran past the server's limit
)

// CreateContextRequest is the body of POST .../sandboxes/{id}/contexts.
// Every field is optional.
type CreateContextRequest struct {
	// Runtime is "python" or "node"; empty means the sandbox's runtime
	// (Python when it has none).
	Runtime string `json:"runtime,omitempty"`
	// Dir is the interpreter's working directory; empty means the
	// sandbox's.
	Dir string `json:"dir,omitempty"`
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string `json:"env,omitempty"`
}

// ContextInfo describes a code context (the reply to create, GET
// .../contexts/{ctx} and restart).
type ContextInfo struct {
	ID string `json:"id"`
	// Runtime is "python" or "node".
	Runtime string `json:"runtime"`
	// Version is the interpreter's version ("3.11.2", "20.19.2").
	Version string `json:"version"`
	// Rich says the Python interpreter has IPython (rich display, magics).
	Rich bool `json:"rich"`
	// Dir is the working directory it was started in ("" for the
	// sandbox's).
	Dir       string    `json:"dir,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// NewContextInfo returns the v1 description of a code context.
func NewContextInfo(info *driver.CodeContextInfo) ContextInfo {
	return ContextInfo{ID: info.ID, Runtime: string(info.Runtime), Version: info.Version, Rich: info.Rich, Dir: info.Dir, CreatedAt: info.CreatedAt.UTC()}
}

// Driver returns the context's description as package driver has it.
func (c *ContextInfo) Driver() driver.CodeContextInfo {
	return driver.CodeContextInfo{ID: c.ID, Runtime: driver.Runtime(c.Runtime), Version: c.Version, Rich: c.Rich, Dir: c.Dir, CreatedAt: c.CreatedAt}
}

// ContextList is the reply to GET .../sandboxes/{id}/contexts.
type ContextList struct {
	// Contexts are the sandbox's live code contexts, oldest first.
	Contexts []ContextInfo `json:"contexts"`
}

// RunCellRequest is the body of POST .../contexts/{ctx}/run.
type RunCellRequest struct {
	// Code is the cell's code.
	Code string `json:"code"`
	// Timeout, in milliseconds, interrupts the cell (the context keeps
	// its state; the stream ends with a failure event, code timeout).
	// 0 means none beyond the server's request limit.
	Timeout int64 `json:"timeout,omitempty"`
}

// Event types of a cell's stream (POST .../contexts/{ctx}/run). The
// stream also has EventPing after 15 s of silence; clients ignore it and
// any type they do not know.
const (
	// CellEventStdout and CellEventStderr carry output, in
	// CellEvent.Data, as the cell prints it.
	CellEventStdout = "stdout"
	CellEventStderr = "stderr"
	// CellEventResult is a display output: CellEvent.Bundle, with
	// CellEvent.Main set for the value of the cell's last expression.
	CellEventResult = "result"
	// CellEventError is the exception the cell raised (Name, Value,
	// Traceback): the cell ran, and failed. An end or failure event
	// follows.
	CellEventError = "error"
	// CellEventEnd is the last event of a cell that ran to its end.
	CellEventEnd = "end"
	// CellEventFailure is the last event of a cell that could not run or
	// finish: Error and Code as in ErrorResponse (CodeTimeout for the
	// cell's timeout, CodeContextDied when the interpreter is gone, ...).
	CellEventFailure = "failure"
)

// CellEvent is one line of a cell's stream (application/x-ndjson).
type CellEvent struct {
	Type string `json:"type"`
	// Data is a chunk of output (stdout, stderr), base64 in JSON.
	Data []byte `json:"data,omitempty"`
	// Main marks the value of the cell's last expression (result).
	Main bool `json:"main,omitempty"`
	// Bundle is the output by MIME type (result).
	Bundle *MIMEBundle `json:"bundle,omitempty"`
	// Name, Value and Traceback describe the exception (error).
	Name      string `json:"name,omitempty"`
	Value     string `json:"value,omitempty"`
	Traceback string `json:"traceback,omitempty"`
	// Truncated says the server left out an output too large to carry
	// (end).
	Truncated bool `json:"truncated,omitempty"`
	// Error and Code describe a failure, as in ErrorResponse.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// MIMEBundle is a display output by MIME type, as Jupyter carries it;
// binary types are base64.
type MIMEBundle struct {
	Text       string          `json:"text/plain,omitempty"`
	HTML       string          `json:"text/html,omitempty"`
	Markdown   string          `json:"text/markdown,omitempty"`
	SVG        string          `json:"image/svg+xml,omitempty"`
	LaTeX      string          `json:"text/latex,omitempty"`
	JavaScript string          `json:"application/javascript,omitempty"`
	PNG        []byte          `json:"image/png,omitempty"`
	JPEG       []byte          `json:"image/jpeg,omitempty"`
	PDF        []byte          `json:"application/pdf,omitempty"`
	JSON       json.RawMessage `json:"application/json,omitempty"`
}

// NewMIMEBundle returns the bundle of an output.
func NewMIMEBundle(o *driver.Output) *MIMEBundle {
	return &MIMEBundle{
		Text: o.Text, HTML: o.HTML, Markdown: o.Markdown, SVG: o.SVG, LaTeX: o.LaTeX, JavaScript: o.JavaScript,
		PNG: o.PNG, JPEG: o.JPEG, PDF: o.PDF, JSON: o.JSON,
	}
}

// Output returns the bundle as package driver has it; main is its IsMain.
func (b *MIMEBundle) Output(main bool) driver.Output {
	if b == nil {
		return driver.Output{IsMain: main}
	}
	return driver.Output{
		Text: b.Text, HTML: b.HTML, Markdown: b.Markdown, SVG: b.SVG, LaTeX: b.LaTeX, JavaScript: b.JavaScript,
		PNG: b.PNG, JPEG: b.JPEG, PDF: b.PDF, JSON: b.JSON, IsMain: main,
	}
}
