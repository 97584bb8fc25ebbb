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
)

// apiError is an error with the HTTP status and code it is answered with.
type apiError struct {
	status int
	code   string
	msg    string
	reason string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
}

// sandboxNotFound is the seed's message for an unknown sandbox.
func sandboxNotFound(id string) *apiError {
	return errorf(http.StatusNotFound, CodeSandboxNotFound, "Sandbox %s not found", id)
}

var (
	errShuttingDown = errorf(http.StatusServiceUnavailable, CodeUnavailable, "the server is shutting down")
	errUnauthorized = errorf(http.StatusUnauthorized, CodeUnauthorized, "missing or invalid bearer token: send the header \"Authorization: Bearer <token>\"")
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
	e := func(status int, code string) *apiError { return &apiError{status: status, code: code, msg: msg} }
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body larger than the server's limit of %d bytes", mbe.Limit)
	case errors.As(err, &se):
		// The seed's wording for a rejected program.
		return &apiError{status: http.StatusUnprocessableEntity, code: CodeSyntaxError, msg: "Syntax error: " + strings.TrimSpace(se.Message)}
	case s.isClosing() && ctx.Err() != nil:
		return errShuttingDown
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, CodeTimeout, "the request ran past the server's %v limit", s.opts.RequestTimeout)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this.
		return errorf(499, CodeUnavailable, "request cancelled")
	case errors.Is(err, compute.ErrNotFound):
		return e(http.StatusNotFound, CodeSandboxNotFound)
	case errors.Is(err, compute.ErrStopped):
		return e(http.StatusGone, CodeSandboxStopped)
	case errors.Is(err, compute.ErrCommandNotFound):
		return e(http.StatusUnprocessableEntity, CodeCommandNotFound)
	case errors.Is(err, compute.ErrOutOfMemory):
		return e(http.StatusUnprocessableEntity, CodeOutOfMemory)
	case errors.Is(err, compute.ErrTimeout):
		return e(http.StatusGatewayTimeout, CodeTimeout)
	case errors.Is(err, compute.ErrUnsupported):
		return e(http.StatusNotImplemented, CodeUnsupported)
	case errors.Is(err, compute.ErrQuotaExceeded):
		return e(http.StatusTooManyRequests, CodeLimit)
	case errors.Is(err, syscall.E2BIG):
		// The request's argv and environment, which the kernel refused.
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "%s: the command's arguments and environment are larger than the sandbox's kernel accepts (about 2 MiB in all, 128 KiB for one argument or variable); pass large data on standard input or in a file", msg)
	case errors.Is(err, syscall.ENAMETOOLONG) && !errors.As(err, &pe):
		return e(http.StatusBadRequest, CodeBadRequest)
	case errors.Is(err, fs.ErrNotExist):
		return s.pathErr(err, pe, http.StatusNotFound, CodeNotExist)
	case errors.Is(err, fs.ErrExist):
		return s.pathErr(err, pe, http.StatusConflict, CodeExist)
	case errors.Is(err, fs.ErrPermission):
		return s.pathErr(err, pe, http.StatusForbidden, CodePermission)
	case errors.As(err, &pe):
		return s.pathErr(err, pe, http.StatusUnprocessableEntity, CodeFileError)
	}
	return e(http.StatusInternalServerError, CodeInternal)
}

func (s *Server) pathErr(err error, pe *fs.PathError, status int, code string) *apiError {
	ae := &apiError{status: status, code: code, msg: err.Error()}
	if errors.As(err, &pe) {
		ae.reason = pe.Err.Error()
	}
	return ae
}
