package server

import (
	_ "embed"
	"net/http"

	"github.com/computesdk-go/compute/server/wire"
)

// The endpoints served without a token: the OpenAPI document and the
// health check.

//go:embed openapi.json
var openAPI []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errorf(wire.CodeMethodNotAllowed, "method %s is not allowed on %s (allowed: GET)", r.Method, r.URL.Path)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPI) // a failed write means the client is gone
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	if s.isClosing() {
		w.Header().Set("Connection", "close")
		return errShuttingDown
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}
