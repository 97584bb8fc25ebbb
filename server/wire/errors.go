package wire

import (
	"errors"
	"io/fs"
	"net/http"

	"github.com/computesdk-go/compute/driver"
)

// statuses maps every error code to the HTTP status it is answered with.
var statuses = map[string]int{
	CodeBadRequest:             http.StatusBadRequest,
	CodeUnauthorized:           http.StatusUnauthorized,
	CodePermission:             http.StatusForbidden,
	CodeForbidden:              http.StatusForbidden,
	CodeNotFound:               http.StatusNotFound,
	CodeSandboxNotFound:        http.StatusNotFound,
	CodeProcessNotFound:        http.StatusNotFound,
	CodeContextNotFound:        http.StatusNotFound,
	CodeNotExist:               http.StatusNotFound,
	CodeMethodNotAllowed:       http.StatusMethodNotAllowed,
	CodeExist:                  http.StatusConflict,
	CodeConflict:               http.StatusConflict,
	CodeContextDied:            http.StatusConflict,
	CodeSandboxStopped:         http.StatusGone,
	CodeTooLarge:               http.StatusRequestEntityTooLarge,
	CodeCommandNotFound:        http.StatusUnprocessableEntity,
	CodeFileError:              http.StatusUnprocessableEntity,
	CodeSyntaxError:            http.StatusUnprocessableEntity,
	CodeOutOfMemory:            http.StatusUnprocessableEntity,
	CodeLimit:                  http.StatusTooManyRequests,
	CodeInternal:               http.StatusInternalServerError,
	CodeProviderAuthentication: http.StatusInternalServerError,
	CodeMissingCredentials:     http.StatusInternalServerError,
	CodeUnsupported:            http.StatusNotImplemented,
	CodeUnavailable:            http.StatusServiceUnavailable,
	CodeTimeout:                http.StatusGatewayTimeout,
}

// kinds lists the codes that stand for an error of package driver or
// io/fs, in the order Code tries them: an error that matches several
// gets the first.
var kinds = []struct {
	code string
	err  error
}{
	{CodeBadRequest, driver.ErrInvalid},
	// Before CodeTimeout: an interpreter that died after its cell's
	// timeout is a died context (Restart it) more than a timeout.
	{CodeContextDied, driver.ErrContextDied},
	{CodeSandboxNotFound, driver.ErrNotFound},
	// Code never returns it (CodeSandboxNotFound comes first); the
	// server answers it for a code context that is not there, which a
	// client reads as driver.ErrNotFound.
	{CodeContextNotFound, driver.ErrNotFound},
	{CodeSandboxStopped, driver.ErrStopped},
	{CodeCommandNotFound, driver.ErrCommandNotFound},
	{CodeOutOfMemory, driver.ErrOutOfMemory},
	{CodeTimeout, driver.ErrTimeout},
	{CodeUnsupported, driver.ErrUnsupported},
	{CodeLimit, driver.ErrQuotaExceeded},
	{CodeProviderAuthentication, driver.ErrAuthentication},
	{CodeMissingCredentials, driver.ErrMissingCredentials},
	{CodeNotExist, fs.ErrNotExist},
	{CodeExist, fs.ErrExist},
	{CodePermission, fs.ErrPermission},
	// A client also reads the server's own refusal of its token as an
	// authentication error; Code never returns it for a provider's.
	{CodeUnauthorized, driver.ErrAuthentication},
}

// byStatus is what a reply without a code this package knows stands for,
// by its status: the replies of a proxy in front of the server, or of a
// server newer than this package.
var byStatus = map[int]error{
	http.StatusBadRequest:      driver.ErrInvalid,
	http.StatusUnauthorized:    driver.ErrAuthentication,
	http.StatusTooManyRequests: driver.ErrQuotaExceeded,
	http.StatusNotImplemented:  driver.ErrUnsupported,
	http.StatusGatewayTimeout:  driver.ErrTimeout,
}

// Status returns the HTTP status of an error code, or 500 for a code it
// does not know.
func Status(code string) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Code returns the error code of err when err matches (errors.Is) an
// error of package driver or io/fs that has one: CodeSandboxNotFound for
// driver.ErrNotFound, CodeNotExist for fs.ErrNotExist, and so on. It
// returns "" for any other error. Err is its inverse.
func Code(err error) string {
	for _, k := range kinds {
		if k.code != CodeUnauthorized && errors.Is(err, k.err) {
			return k.code
		}
	}
	return ""
}

// Err returns the error of package driver or io/fs that a reply with
// this code and HTTP status stands for, or nil. A reply without a code
// this package knows is read by its status (401 driver.ErrAuthentication,
// 429 driver.ErrQuotaExceeded, 501 driver.ErrUnsupported, 504
// driver.ErrTimeout; 404 without any code driver.ErrNotFound). Status
// 0 stands for none, as on an exec stream's error event.
func Err(code string, status int) error {
	if _, known := statuses[code]; known {
		for _, k := range kinds {
			if k.code == code {
				return k.err
			}
		}
		return nil
	}
	if code == "" && status == http.StatusNotFound {
		return driver.ErrNotFound
	}
	return byStatus[status]
}
