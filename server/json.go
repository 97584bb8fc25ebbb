package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/computesdk-go/compute/server/wire"
)

// writeJSON writes v, a value of bounded size, as the whole reply.
func writeJSON(w http.ResponseWriter, status int, v any) {
	r := newReply(w, status)
	r.value(v)
	r.end()
}

// writeError answers err in the request's flavor, unless the reply has
// begun (then the error only reaches the access log).
func (s *Server) writeError(w *respWriter, r *http.Request, fl flavor, err error) {
	ae := s.classify(r.Context(), err)
	info, _ := r.Context().Value(reqInfoKey{}).(*reqInfo)
	sandbox := ""
	if info != nil {
		info.mu.Lock()
		info.errMsg = ae.msg
		sandbox = info.sandbox
		info.mu.Unlock()
	}
	if w.wroteHeader {
		return
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="compute"`)
	}
	if fl == flavorSeed {
		writeSeed(w, ae.status, &seedResponse{Error: ae.msg, SandboxID: sandbox, Provider: s.provider})
		return
	}
	writeJSON(w, ae.status, &wire.ErrorResponse{Error: ae.msg, Code: ae.code, Reason: ae.reason})
}

// readJSON decodes the request body into v, within MaxBodyBytes. The
// body must be UTF-8, as JSON is: a byte that is not would become a
// 3-byte U+FFFD in the decoded strings (binary content travels in base64).
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if !utf8.Valid(body) {
		return badRequest("Invalid JSON in request body: it is not UTF-8 text (send binary content in base64, with \"encoding\": \"base64\")")
	}
	// Like JSON.parse, Unmarshal refuses anything after the value.
	err = json.Unmarshal(body, v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badRequest("Invalid JSON in request body: the body must be a JSON object")
		}
		return badRequest("Invalid JSON in request body: field %s must be %s, not a JSON %s", field, jsonType(te.Type.Kind().String()), te.Value)
	}
	return badRequest("Invalid JSON in request body")
}

// readBody reads the whole request body, within MaxBodyBytes, into a
// buffer that grows no larger than the body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1) // +1: room to see the end
	}
	if _, err := buf.ReadFrom(body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	return buf.Bytes(), nil
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

// millis turns a count of milliseconds into a duration.
func millis(field string, ms float64) (time.Duration, error) {
	if ms < 0 || math.IsNaN(ms) || ms > float64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, badRequest("%s must be a non-negative number of milliseconds, got %v", field, ms)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// toMillis is d in whole milliseconds, rounded up so that a positive
// duration never becomes 0 ("the default").
func toMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// maxLabelBytes bounds a sandbox's name and metadata together: every
// info and list reply repeats them.
const maxLabelBytes = 16 << 10

func checkLabels(name string, metadata map[string]string) error {
	n := len(name)
	for k, v := range metadata {
		n += len(k) + len(v)
	}
	if n > maxLabelBytes {
		return errorf(wire.CodeTooLarge, "name and metadata take %d bytes, more than the %d a sandbox may have; keep large data in the sandbox's files", n, maxLabelBytes)
	}
	return nil
}

func checkPath(p string) error {
	if p == "" {
		return badRequest("path is required")
	}
	if strings.ContainsRune(p, 0) {
		return badRequest("path %q contains a NUL byte", p)
	}
	return nil
}

// isoTime is JavaScript's Date.prototype.toISOString.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
