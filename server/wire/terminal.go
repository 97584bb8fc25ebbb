package wire

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// The terminal endpoint: a program on a pseudo-terminal in a sandbox,
// over a WebSocket.
//
//	GET /api/compute/v1/sandboxes/{id}/terminal?rows=R&cols=C&dir=D&arg=A&arg=B&env=K=V
//
// The server checks the request and starts the program before it
// upgrades, so that an unknown sandbox, bad parameters or a program that
// cannot start are ordinary v1 error replies (ErrorResponse, with their
// status). Then it upgrades with the subprotocol TerminalSubprotocol.
//
// Frames: binary frames carry data both ways (server to client: what the
// program writes to the terminal; client to server: keystrokes). A
// client sends text frames of type TerminalResize. The server sends text
// frames of type TerminalWarning (a resize that failed; the terminal goes
// on) and, last before it closes the socket normally, TerminalExit with
// the exit code or TerminalError with what went wrong. The client closing
// the socket hangs up the terminal.
//
// Authentication is the server's bearer token as everywhere, or, for
// browsers, which cannot set headers on a WebSocket, the subprotocol
// BearerSubprotocol(token) offered next to TerminalSubprotocol; the
// server never selects it.
const (
	// TerminalSubprotocol is the WebSocket subprotocol of the terminal
	// endpoint. A client that offers subprotocols must offer this one.
	TerminalSubprotocol = "compute.terminal.v1"
	// BearerSubprotocolPrefix starts the subprotocol that carries a
	// bearer token (see BearerSubprotocol).
	BearerSubprotocolPrefix = "bearer."
)

// Query parameters of the terminal endpoint. Each is optional.
const (
	// TerminalRows and TerminalCols are the initial size, each from 1 to
	// MaxTerminalSize; absent means 24 rows and 80 columns.
	TerminalRows = "rows"
	TerminalCols = "cols"
	// TerminalDir is the working directory; absent means the sandbox's.
	TerminalDir = "dir"
	// TerminalArg, repeated, is the program and its arguments in order;
	// absent means a login shell (bash where the sandbox has it, else sh).
	TerminalArg = "arg"
	// TerminalEnv, repeated, is a KEY=VALUE added to the environment;
	// TERM is xterm-256color unless one sets it.
	TerminalEnv = "env"
)

// MaxTerminalSize bounds each of a terminal's rows and columns on the
// wire; package compute's MaxTerminalSize is the same bound.
const MaxTerminalSize = 10000

// Types of the text frames of a terminal's WebSocket.
const (
	// TerminalResize (client to server) sets the size: Rows and Cols.
	TerminalResize = "resize"
	// TerminalExit (server to client) is the last frame of a program
	// that ran to its end: ExitCode (128+n for a program killed by
	// signal n).
	TerminalExit = "exit"
	// TerminalError (server to client) is the last frame of a terminal
	// that ended otherwise: Error and Code as in ErrorResponse (CodeUnavailable: the server is shutting down;
	// CodeTimeout: no input or output for the server's request timeout;
	// CodeSandboxNotFound: the sandbox was destroyed).
	TerminalError = "error"
	// TerminalWarning (server to client) reports a failure that does not
	// end the terminal, such as a resize the provider cannot do
	// (CodeUnsupported) or a text frame the server does not understand
	// (CodeBadRequest): Error and Code.
	TerminalWarning = "warning"
)

// TerminalMessage is a text frame of a terminal's WebSocket. Clients
// ignore types they do not know.
type TerminalMessage struct {
	Type string `json:"type"`
	// Rows and Cols are the new size (TerminalResize).
	Rows int `json:"rows,omitempty"`
	Cols int `json:"cols,omitempty"`
	// ExitCode is the program's exit code (TerminalExit).
	ExitCode *int `json:"exitCode,omitempty"`
	// Error and Code describe a TerminalError or TerminalWarning.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// TerminalPath is the path of the terminal endpoint of sandbox id.
func TerminalPath(id string) string {
	return V1Path + "/sandboxes/" + url.PathEscape(id) + "/terminal"
}

// BearerSubprotocol is the WebSocket subprotocol that carries token:
// "bearer." and the token in unpadded base64url, as Kubernetes does for
// browsers, which cannot send an Authorization header with a WebSocket.
func BearerSubprotocol(token string) string {
	return BearerSubprotocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// TokenFromSubprotocol returns the token a BearerSubprotocol carries.
func TokenFromSubprotocol(proto string) (string, bool) {
	enc, ok := strings.CutPrefix(proto, BearerSubprotocolPrefix)
	if !ok {
		return "", false
	}
	tok, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	return string(tok), true
}

// TerminalQuery returns the query parameters that ask for req. Zero rows
// or columns are left out (the server's default).
func TerminalQuery(req *driver.TerminalRequest) url.Values {
	q := url.Values{}
	if req.Rows > 0 {
		q.Set(TerminalRows, strconv.Itoa(req.Rows))
	}
	if req.Cols > 0 {
		q.Set(TerminalCols, strconv.Itoa(req.Cols))
	}
	if req.Dir != "" {
		q.Set(TerminalDir, req.Dir)
	}
	for _, a := range req.Argv {
		q.Add(TerminalArg, a)
	}
	for k, v := range req.Env {
		q.Add(TerminalEnv, k+"="+v)
	}
	return q
}

// ParseTerminalQuery reads the query parameters of the terminal
// endpoint. Rows and Cols are 0 where absent; Argv is empty for the
// default shell. An error matches driver.ErrInvalid and names the
// parameter.
func ParseTerminalQuery(q url.Values) (*driver.TerminalRequest, error) {
	req := &driver.TerminalRequest{Dir: q.Get(TerminalDir), Argv: q[TerminalArg]}
	for _, p := range []struct {
		name string
		to   *int
	}{{TerminalRows, &req.Rows}, {TerminalCols, &req.Cols}} {
		vs, ok := q[p.name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > MaxTerminalSize || len(vs) > 1 {
			return nil, fmt.Errorf("query parameter %s=%q: want one whole number from 1 to %d: %w", p.name, strings.Join(vs, ","), MaxTerminalSize, driver.ErrInvalid)
		}
		*p.to = n
	}
	if strings.ContainsRune(req.Dir, 0) {
		return nil, fmt.Errorf("query parameter %s contains a NUL byte: %w", TerminalDir, driver.ErrInvalid)
	}
	if len(req.Argv) > 0 && req.Argv[0] == "" {
		return nil, fmt.Errorf("query parameter %s: the program name (the first %s) is empty: %w", TerminalArg, TerminalArg, driver.ErrInvalid)
	}
	for i, a := range req.Argv {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("query parameter %s #%d contains a NUL byte: %w", TerminalArg, i+1, driver.ErrInvalid)
		}
	}
	if vs := q[TerminalEnv]; len(vs) > 0 {
		req.Env = make(map[string]string, len(vs))
		for _, kv := range vs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("query parameter %s=%q: want KEY=VALUE: %w", TerminalEnv, kv, driver.ErrInvalid)
			}
			req.Env[k] = v
		}
		if err := driver.ValidateEnv(req.Env); err != nil {
			return nil, fmt.Errorf("query parameter %s: %w", TerminalEnv, err)
		}
	}
	return req, nil
}
