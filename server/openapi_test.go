package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/driver"
	"github.com/computesdk-go/compute/server/wire"
)

// TestOpenAPI checks the checked-in OpenAPI document against the code:
// every endpoint the server routes is documented, nothing else is, and
// the seed's actions and the error codes are the ones the code knows.
func TestOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(file, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q; want an OpenAPI 3 document", doc.OpenAPI)
	}

	s := New(nil, Options{IdleTimeout: -1, Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	want := map[string]bool{"POST " + wire.ProtocolPath: true, "GET " + wire.OpenAPIPath: true, "GET " + wire.HealthPath: true}
	for pattern := range s.routeTable() {
		want[pattern] = true
	}
	got := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			got[strings.ToUpper(method)+" "+path] = true
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("endpoint %s is not in openapi.json", p)
		}
	}
	for p := range got {
		if !want[p] {
			t.Errorf("openapi.json documents %s, which the server does not serve", p)
		}
	}

	actions := []string{actionCreate, actionList, actionDestroy, actionGetInfo, actionRunCode, actionRunCommand,
		actionReadFile, actionWriteFile, actionMkdir, actionReaddir, actionExists, actionRemove}
	if enum := doc.Components.Schemas["SeedRequest"].Properties["action"].Enum; !slices.Equal(enum, actions) {
		t.Errorf("SeedRequest.action enum %q; want %q", enum, actions)
	}
	codes := []string{wire.CodeBadRequest, wire.CodeUnauthorized, wire.CodePermission, wire.CodeForbidden, wire.CodeNotFound, wire.CodeSandboxNotFound,
		wire.CodeProcessNotFound, wire.CodeContextNotFound, wire.CodeNotExist, wire.CodeMethodNotAllowed, wire.CodeExist, wire.CodeConflict, wire.CodeContextDied, wire.CodeSandboxStopped, wire.CodeTooLarge,
		wire.CodeCommandNotFound, wire.CodeFileError, wire.CodeSyntaxError, wire.CodeOutOfMemory, wire.CodeLimit, wire.CodeInternal, wire.CodeProviderAuthentication, wire.CodeMissingCredentials, wire.CodeUnsupported, wire.CodeUnavailable, wire.CodeTimeout}
	enum := doc.Components.Schemas["Error"].Properties["code"].Enum
	slices.Sort(enum)
	slices.Sort(codes)
	if !slices.Equal(enum, codes) {
		t.Errorf("Error.code enum %q; want %q", enum, codes)
	}
	events := []string{wire.EventStart, wire.EventStdout, wire.EventStderr, wire.EventExit, wire.EventError, wire.EventPing}
	if enum := doc.Components.Schemas["Event"].Properties["type"].Enum; !slices.Equal(enum, events) {
		t.Errorf("Event.type enum %q; want %q", enum, events)
	}
	cellEvents := []string{wire.CellEventStdout, wire.CellEventStderr, wire.CellEventResult, wire.CellEventError, wire.CellEventEnd, wire.CellEventFailure, wire.EventPing}
	if enum := doc.Components.Schemas["CellEvent"].Properties["type"].Enum; !slices.Equal(enum, cellEvents) {
		t.Errorf("CellEvent.type enum %q; want %q", enum, cellEvents)
	}
	termTypes := []string{wire.TerminalResize, wire.TerminalExit, wire.TerminalError, wire.TerminalWarning}
	if enum := doc.Components.Schemas["TerminalMessage"].Properties["type"].Enum; !slices.Equal(enum, termTypes) {
		t.Errorf("TerminalMessage.type enum %q; want %q", enum, termTypes)
	}
	if wire.MaxTerminalSize != compute.MaxTerminalSize {
		t.Errorf("wire.MaxTerminalSize %d, compute.MaxTerminalSize %d; want them equal", wire.MaxTerminalSize, compute.MaxTerminalSize)
	}
	// A create's fields are wire.CreateRequest's, and the seed's create
	// options are seedCreateOptions'.
	for name, typ := range map[string]reflect.Type{"CreateRequest": reflect.TypeFor[wire.CreateRequest]()} {
		var props, fields []string
		for p := range doc.Components.Schemas[name].Properties {
			props = append(props, p)
		}
		for f := range typ.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields = append(fields, tag)
		}
		slices.Sort(props)
		slices.Sort(fields)
		if !slices.Equal(props, fields) {
			t.Errorf("%s properties %q; want %q", name, props, fields)
		}
	}
	var seed struct {
		Components struct {
			Schemas struct {
				SeedRequest struct {
					Properties struct {
						Options struct {
							Properties map[string]json.RawMessage `json:"properties"`
						} `json:"options"`
					} `json:"properties"`
				} `json:"SeedRequest"`
			} `json:"schemas"`
		} `json:"components"`
	}
	json.Unmarshal(file, &seed)
	var seedProps, seedFields []string
	for p := range seed.Components.Schemas.SeedRequest.Properties.Options.Properties {
		seedProps = append(seedProps, p)
	}
	for f := range reflect.TypeFor[seedCreateOptions]().Fields() {
		seedFields = append(seedFields, f.Tag.Get("json"))
	}
	slices.Sort(seedProps)
	slices.Sort(seedFields)
	if !slices.Equal(seedProps, seedFields) {
		t.Errorf("SeedRequest.options properties %q; want %q", seedProps, seedFields)
	}

	// The MIME types of a result are the JSON names of wire.MIMEBundle.
	var mimes []string
	for name := range doc.Components.Schemas["MIMEBundle"].Properties {
		mimes = append(mimes, name)
	}
	b, _ := json.Marshal(wire.NewMIMEBundle(&driver.Output{Text: "t", HTML: "h", Markdown: "m", SVG: "s", LaTeX: "l", JavaScript: "j", PNG: []byte{1}, JPEG: []byte{1}, PDF: []byte{1}, JSON: []byte("1")}))
	var all map[string]any
	json.Unmarshal(b, &all)
	var fields []string
	for name := range all {
		fields = append(fields, name)
	}
	slices.Sort(mimes)
	slices.Sort(fields)
	if !slices.Equal(mimes, fields) {
		t.Errorf("MIMEBundle properties %q; want %q", mimes, fields)
	}

	// Served as checked in, without a token.
	s2 := New(nil, Options{Token: "t", IdleTimeout: -1, Logger: slog.New(slog.DiscardHandler)})
	defer s2.Close()
	rec := httptest.NewRecorder()
	s2.ServeHTTP(rec, httptest.NewRequest("GET", wire.OpenAPIPath, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	if rec.Code != 200 || string(body) != string(file) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET %s: %d, %d bytes, %q; want 200 and openapi.json", wire.OpenAPIPath, rec.Code, len(body), rec.Header().Get("Content-Type"))
	}
	rec = httptest.NewRecorder()
	s2.ServeHTTP(rec, httptest.NewRequest("POST", wire.OpenAPIPath, nil))
	if rec.Code != 405 {
		t.Errorf("POST %s: %d; want 405", wire.OpenAPIPath, rec.Code)
	}
}
