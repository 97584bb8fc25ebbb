package modal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed Modal operation. It matches (errors.Is) the compute
// error of its category, when it has one (driver.ErrNotFound,
// driver.ErrAuthentication, driver.ErrQuotaExceeded, ...), and unwraps to
// the SDK's own error (errors.As with modalsdk.NotFoundError, a gRPC
// status, ...) for callers who need Modal's detail.
type Error struct {
	// Op is what failed: "create", "exec", "destroy", ...
	Op string
	// Sandbox is the sandbox's id, when the operation had one.
	Sandbox string
	// Kind is the compute error the failure falls under, or nil. For a
	// command whose context ended and whose kill then failed, it is the
	// context's error (context.Canceled or context.DeadlineExceeded).
	Kind error
	// Msg explains the failure and, where the caller can act, what to do.
	Msg string
	// Err is the SDK's error, or nil.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("modal: ")
	b.WriteString(e.Op)
	if e.Sandbox != "" {
		b.WriteString(" ")
		b.WriteString(e.Sandbox)
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	// The SDK's own words for missing credentials say less than Msg.
	if e.Err != nil && e.Kind != driver.ErrMissingCredentials {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap gives both the compute error and the SDK's.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

const credentialsHelp = "missing Modal API credentials: set TokenID and TokenSecret in modal.Config, " +
	"or the MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment variables " +
	"(create a token at https://modal.com/settings/tokens, or run `modal token new`)"

// classify says what an SDK error means, and the compute error of its
// category; ("", nil) when it has neither.
func classify(err error) (msg string, kind error) {
	if err == nil {
		return "", nil
	}
	var (
		nf  modalsdk.NotFoundError
		re  modalsdk.ResourceExhaustedError
		cf  modalsdk.ConflictError
		cc  modalsdk.ClientClosedError
		et  modalsdk.ExecTimeoutError
		st  modalsdk.SandboxTimeoutError
		ae  modalsdk.AlreadyExistsError
		inv modalsdk.InvalidError
	)
	switch {
	case strings.Contains(err.Error(), "missing credentials"):
		return credentialsHelp, driver.ErrMissingCredentials
	case errors.As(err, &nf):
		return "", driver.ErrNotFound
	case errors.As(err, &re):
		return "Modal has no capacity or quota left for this request (check your usage at https://modal.com/settings)", driver.ErrQuotaExceeded
	case errors.As(err, &cf):
		return "the sandbox has already finished", driver.ErrStopped
	case errors.As(err, &cc):
		return "the sandbox was destroyed", driver.ErrStopped
	case errors.As(err, &et), errors.As(err, &st):
		return "", driver.ErrTimeout
	case errors.As(err, &ae):
		return "a sandbox with this name is already running in the app (SandboxOptions.Name must be unique among an app's running sandboxes)", nil
	case errors.As(err, &inv):
		return "", nil
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unauthenticated:
			return "Modal rejected the credentials: check TokenID and TokenSecret, or MODAL_TOKEN_ID and MODAL_TOKEN_SECRET", driver.ErrAuthentication
		case codes.PermissionDenied:
			return "Modal denied the request (permission denied)", nil
		case codes.ResourceExhausted:
			for _, d := range s.Details() {
				if _, ok := d.(*pb.RPCRetryPolicy); ok {
					return "Modal is throttling requests and asked to retry later than the SDK waits (MODAL_MAX_THROTTLE_WAIT) or the context allows", driver.ErrQuotaExceeded
				}
			}
			return "Modal refused for lack of quota (check your usage at https://modal.com/settings)", driver.ErrQuotaExceeded
		case codes.NotFound:
			return "", driver.ErrNotFound
		case codes.Unavailable:
			return "Modal is unavailable (the SDK retried)", nil
		}
	}
	return "", nil
}

// wrapErr turns an SDK error into an *Error (context errors are returned
// as they are).
func wrapErr(op, id string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	msg, kind := classify(err)
	return &Error{Op: op, Sandbox: id, Kind: kind, Msg: msg, Err: err}
}

// ctxErr returns ctx's error when err came from ctx being done (the SDK
// reports that as a gRPC status), else err.
func ctxErr(ctx context.Context, err error) error {
	if _, ok := ctx.Deadline(); ok && err != nil && ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded {
		// gRPC's own timer for the context's deadline can fire a moment
		// before the context reports it: give the context that moment.
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil && ctx.Err() != nil {
		switch status.Code(err) {
		case codes.Canceled, codes.DeadlineExceeded:
			return ctx.Err()
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return ctx.Err()
		}
	}
	return err
}

// isGone reports whether err says the sandbox no longer exists or runs:
// the server's NotFound, the SDK's "finished" and "unavailable" errors, a
// detached handle.
func isGone(err error) bool {
	var (
		nf modalsdk.NotFoundError
		cf modalsdk.ConflictError
		cc modalsdk.ClientClosedError
	)
	if errors.As(err, &nf) || errors.As(err, &cf) || errors.As(err, &cc) {
		return true
	}
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition:
		return true
	}
	return false
}

// stoppedError says a sandbox is not running any more, and why when known.
func stoppedError(op, id, why string, err error) error {
	msg := "the sandbox is no longer running"
	if why != "" {
		msg += " (" + why + ")"
	}
	return &Error{Op: op, Sandbox: id, Kind: driver.ErrStopped, Msg: msg, Err: err}
}

// exitReason explains a finished sandbox's exit code.
func exitReason(code int) string {
	switch code {
	case 124:
		return "it reached its timeout"
	case 137:
		return "it was terminated"
	case 0:
		return "it exited"
	}
	return fmt.Sprintf("it exited with code %d", code)
}

// codeOf is the name of err's gRPC status code ("NotFound"), "OK" for nil
// and "Unknown" for errors without one.
func codeOf(err error) string { return status.Code(err).String() }
