// Package console is compute's web console: a page, served by package
// server at "/" (compute serve), where people create and destroy
// sandboxes, run notebook cells over code contexts (charts and tables
// rendered), browse, upload, download and edit files, and open a terminal
// (xterm.js over the server's WebSocket terminal endpoint).
//
// It is plain HTML, CSS and ES modules embedded in the binary: no build
// step, nothing fetched from anywhere but the server, so it works offline.
// Third-party browser code (xterm.js and its fit addon) is vendored under
// vendor/ at pinned versions with its licenses; vendor.sh re-vendors it.
//
// The page holds no secrets and is served without a token; it talks to
// the server's API as any client does, sending the token the user types
// (kept in sessionStorage) as a bearer header, never a cookie, so there
// is nothing for another site to forge (no CSRF). Every response carries
// a strict Content-Security-Policy (Policy): scripts only from the
// server, connections only to it, and HTML produced in a sandbox is shown
// only inside a sandboxed iframe with an opaque origin, never in the
// console's own.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// Prefix is the path under which the console's assets are served; the
// page itself is at "/".
const Prefix = "/console/"

// Policy is the Content-Security-Policy of every console response.
//
// style-src allows inline styles because xterm.js styles its terminal
// through <style> elements it creates; the console never puts anything
// from a sandbox into its own document, so that opens no injection.
// frame-src allows the console's own origin only: the one frame it shows
// is an about:srcdoc iframe with the sandbox attribute (no scripts, an
// opaque origin) that inherits this policy and adds its own, stricter
// one. connect-src 'self' covers the same-origin WebSocket (ws: and wss:).
const Policy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; frame-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed index.html *.js *.css icon.svg vendor
var files embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	body        []byte
	etag        string
	contentType string
}

// assets are the embedded files by name, read and hashed on first use:
// this package is linked into every compute command, and doing it at init
// (about 400 KiB copied and hashed) would slow the start of each one, also
// those that never serve the console (issue 16).
var assets = sync.OnceValue(load)

func load() map[string]*asset {
	m := map[string]*asset{}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[p] = &asset{name: p, body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: contentType(p)}
		return nil
	})
	if err != nil {
		panic("console: reading the embedded files: " + err.Error())
	}
	return m
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	default: // LICENSE files, VERSIONS
		return "text/plain; charset=utf-8"
	}
}

// Handler returns the handler of the page ("/") and its assets (under
// Prefix). It answers GET and HEAD; other paths are 404 and other methods
// 405, in plain text. Responses carry Policy and no-sniff headers, and
// are revalidated on every load (Cache-Control: no-cache with an ETag),
// so a new binary's console is never mixed with an old one's cached
// files.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", Policy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	var name string
	switch {
	case r.URL.Path == "/":
		name = "index.html"
	case strings.HasPrefix(r.URL.Path, Prefix):
		name = strings.TrimPrefix(r.URL.Path, Prefix)
	}
	a := assets()[name]
	if a == nil || name == "index.html" && r.URL.Path != "/" {
		http.Error(w, "404 not found: the console's page is at /", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed (allowed: GET, HEAD)", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
