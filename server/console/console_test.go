package console

import (
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// TestReferences checks, without a browser, that everything the page
// loads is embedded: the page's scripts and styles, and every module each
// script imports.
func TestReferences(t *testing.T) {
	page := string(assets()["index.html"].body)
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("index.html references only %v", refs)
	}
	for _, m := range refs {
		if !strings.HasPrefix(m[1], Prefix) || assets()[strings.TrimPrefix(m[1], Prefix)] == nil {
			t.Errorf("index.html loads %s, which is not an embedded asset under %s", m[1], Prefix)
		}
	}
	imports := regexp.MustCompile(`(?m)^import\s[^'"]*['"]([^'"]+)['"]`)
	for name, a := range assets() {
		if path.Ext(name) != ".js" {
			continue
		}
		for _, m := range imports.FindAllStringSubmatch(string(a.body), -1) {
			target := path.Join(path.Dir(name), m[1])
			if !strings.HasPrefix(m[1], "./") || assets()[target] == nil {
				t.Errorf("%s imports %q: not a relative path to an embedded file", name, m[1])
			}
		}
	}
	for _, name := range []string{"vendor/xterm/LICENSE.xterm", "vendor/xterm/LICENSE.addon-fit", "vendor/xterm/VERSIONS"} {
		if assets()[name] == nil {
			t.Errorf("%s is not vendored (run vendor.sh)", name)
		}
	}
}

func TestHandler(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 200},
		{"HEAD", "/", 200},
		{"GET", "/console/app.js", 200},
		{"GET", "/console/vendor/xterm/xterm.mjs", 200},
		{"GET", "/console/index.html", 404},
		{"GET", "/console/vendor.sh", 404},
		{"GET", "/console/console_test.go", 404},
		{"GET", "/elsewhere", 404},
		{"DELETE", "/", 405},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, rec.Code, c.status)
		}
		if rec.Header().Get("Content-Security-Policy") != Policy || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no policy headers: %v", c.method, c.path, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("If-None-Match", assets()["index.html"].etag)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("GET / with its ETag = %d, want 304", rec.Code)
	}
}
