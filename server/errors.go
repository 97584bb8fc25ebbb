package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"syscall"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/server/wire"
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status int
	code   string
	msg    string
	reason string
}

func (e *apiError) Error() string { return e.msg }

// errorf returns the error answered with code (and its status) and the
// formatted message.
func errorf(code, format string, args ...any) *apiError {
	return &apiError{status: wire.Status(code), code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(wire.CodeBadRequest, format, args...)
}

// sandboxNotFound is the seed's message for an unknown sandbox.
func sandboxNotFound(id string) *apiError {
	return errorf(wire.CodeSandboxNotFound, "Sandbox %s not found", id)
}

var (
	errShuttingDown = errorf(wire.CodeUnavailable, "the server is shutting down")
	errUnauthorized = errorf(wire.CodeUnauthorized, "missing or invalid bearer token: send the header \"Authorization: Bearer <token>\"")
)

// classify turns any error of a handler into what the client is told.
// Errors from the provider keep their message; their category picks the
// status (never a stack trace, never a panic).
func (s *Server) classify(ctx context.Context, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	var se *compute.SyntaxError
	var pe *fs.PathError
	msg := err.Error()
	code := wire.Code(err)
	switch {
	case errors.As(err, &mbe):
		return errorf(wire.CodeTooLarge, "request body larger than the server's limit of %d bytes", mbe.Limit)
	case errors.As(err, &se):
		// The protocol's wording for a rejected program.
		return &apiError{status: wire.Status(wire.CodeSyntaxError), code: wire.CodeSyntaxError, msg: "Syntax error: " + strings.TrimSpace(se.Message)}
	case s.isClosing() && ctx.Err() != nil:
		return errShuttingDown
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return errorf(wire.CodeTimeout, "the request ran past the server's %v limit", s.opts.RequestTimeout)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this.
		return &apiError{status: 499, code: wire.CodeUnavailable, msg: "request cancelled"}
	case code != "" && !isFileCode(code):
		return &apiError{status: wire.Status(code), code: code, msg: msg}
	case errors.Is(err, syscall.E2BIG):
		// The request's argv and environment, which the kernel refused.
		return errorf(wire.CodeTooLarge, "%s: the command's arguments and environment are larger than the sandbox's kernel accepts (about 2 MiB in all, 128 KiB for one argument or variable); pass large data on standard input or in a file", msg)
	case errors.Is(err, syscall.ENAMETOOLONG) && !errors.As(err, &pe):
		return &apiError{status: wire.Status(wire.CodeBadRequest), code: wire.CodeBadRequest, msg: msg}
	case code != "":
		return s.pathErr(err, pe, code)
	case errors.As(err, &pe):
		return s.pathErr(err, pe, wire.CodeFileError)
	}
	return &apiError{status: wire.Status(wire.CodeInternal), code: wire.CodeInternal, msg: msg}
}

// isFileCode reports whether code is one of a file error.
func isFileCode(code string) bool {
	return code == wire.CodeNotExist || code == wire.CodeExist || code == wire.CodePermission
}

func (s *Server) pathErr(err error, pe *fs.PathError, code string) *apiError {
	ae := &apiError{status: wire.Status(code), code: code, msg: err.Error()}
	if errors.As(err, &pe) {
		ae.reason = pe.Err.Error()
	}
	return ae
}
