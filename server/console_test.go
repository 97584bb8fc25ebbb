package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/console"
	"github.com/computesdk-go/compute/server/wire"
)

// The web console, in a real browser: Debian's chromium, headless, driven
// through the DevTools protocol (chromedp) against a server on the local
// provider. CI installs chromium (.ci/run); elsewhere these tests skip,
// saying why.
//
// COMPUTE_CONSOLE_SCREENSHOT=docs/console.png (a path relative to the
// repository root, or absolute) makes TestConsole save a screenshot of a
// sandbox page there.

// stepGuard bounds one step of a browser test: a hang guard, not a
// performance limit (a cell's first run starts an interpreter, and
// matplotlib's first import builds its font cache).
const stepGuard = 3 * time.Minute

// page is a headless chromium with one tab, and what the tab reported.
type page struct {
	t   *testing.T
	ctx context.Context

	// expect401 says the test sends wrong tokens: the browser logs the
	// 401 replies as failed loads.
	expect401 bool
	// noBrowserLog ignores the browser's log (failed loads the test
	// causes on purpose); exceptions and console.error still count.
	noBrowserLog bool

	mu     sync.Mutex
	errors []string // exceptions, console.error calls and browser log errors of the page
}

// chromium returns the browser's path, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("skipped: no chromium on PATH (apt-get install chromium; CI installs it)")
	return ""
}

// newPage starts chromium; it is closed when the test ends.
func newPage(t *testing.T) *page {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(1440, 1000),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start as root with its own sandbox on (CI
		// runs as root). It loads only this test's server: the console
		// and, inside a sandboxed iframe, HTML from sandboxes of this test.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	p := &page{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, p.listen); err != nil {
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	// The browser's log (CSP violations, failed loads) is off until asked.
	p.do("enabling the browser log", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, log.Enable, cdp.Empty{})
		return err
	}))
	return p
}

func (p *page) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d)", d.URL, d.LineNumber)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		msg = "console.error: " + strings.Join(parts, " ")
	case *log.EventEntryAdded:
		// The browser's own log: a Content-Security-Policy violation, a
		// resource that failed to load, a blocked frame.
		e := ev.Entry
		if e.Level != log.EntryLevelError || p.noBrowserLog {
			return
		}
		if p.expect401 && e.Source == log.EntrySourceNetwork && strings.Contains(e.Text, "401") {
			return // the token form's refusals
		}
		if strings.HasPrefix(e.Text, "Blocked script execution in 'about:srcdoc'") {
			return // the output frame's sandbox at work
		}
		msg = fmt.Sprintf("browser log (%s): %s %s", e.Source, e.Text, e.URL)
	default:
		return
	}
	p.mu.Lock()
	p.errors = append(p.errors, msg)
	p.mu.Unlock()
}

// noErrors fails the test if the page threw or logged an error.
func (p *page) noErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errors) > 0 {
		p.t.Errorf("the page had JavaScript errors:\n%s", strings.Join(p.errors, "\n"))
	}
}

// do runs actions, failing the test with what the page shows when they
// fail or hang.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepGuard)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v (after %v; the hang guard is %v)\n%s", what, err, stepGuard, stepGuard, p.dump())
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepGuard)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v\n%s", expr, err, p.dump())
	}
	return v
}

// wait waits until a JavaScript expression is true.
func (p *page) wait(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepGuard)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingTimeout(0), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		p.t.Fatalf("waiting for %s (%s): %v\n%s", what, expr, err, p.dump())
	}
}

// dump is what the page shows, for failure messages.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if err != nil {
		text = "(the page's text could not be read: " + err.Error() + ")"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return "--- the page shows:\n" + text + "\n--- errors of the page:\n" + strings.Join(p.errors, "\n")
}

// cell is the CSS selector of the n-th notebook cell (from 1).
func cell(n int, sel string) string {
	return fmt.Sprintf(".cells > .cell:nth-child(%d) %s", n, sel)
}

// js quotes s as a JavaScript string.
func js(s string) string {
	return fmt.Sprintf("%q", s)
}

// typeCell types code into cell n and runs it with Shift+Enter.
func (p *page) typeCell(n int, code string) {
	p.t.Helper()
	p.do(fmt.Sprintf("typing cell %d", n),
		chromedp.WaitVisible(chromedp.CSS(cell(n, "textarea.code"))),
		chromedp.SendKeys(chromedp.CSS(cell(n, "textarea.code")), code),
		pressEnter(chromedp.ModifierShift))
}

// pressEnter presses Enter (with modifiers) in the focused element, as a
// keyboard does: a keydown and a keyup. chromedp's KeyEvent adds a char
// event, which the browser delivers even when the keydown was handled and
// its default prevented (a real key press then has no keypress): xterm.js
// would send a second "\r", and Shift+Enter would leave a newline in the
// next cell.
func pressEnter(modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Modifiers: int64(modifiers), Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// openSandbox creates a sandbox from the list page and returns its id.
func (p *page) openSandbox() string {
	p.t.Helper()
	p.do("creating a sandbox",
		chromedp.WaitVisible(chromedp.ID("new-sandbox")),
		chromedp.Click(chromedp.ID("new-sandbox")),
		chromedp.WaitVisible(chromedp.ID("sandbox-id")))
	return eval[string](p, "document.getElementById('sandbox-id').textContent")
}

// typeTerminal types a line into the terminal, presses Enter, and waits
// for want on its screen.
func (p *page) typeTerminal(line, want string) {
	p.t.Helper()
	p.wait("the terminal to connect", `document.querySelector('#terminal[data-state="open"]')`)
	// The text goes in as the browser's input events (Input.insertText,
	// as an input method or a paste does): chromedp's key events (a
	// keydown, then a char event) reach xterm.js twice, once as the
	// keydown and once as the char.
	p.do("typing in the terminal",
		chromedp.Click(chromedp.CSS("#terminal .xterm-screen")),
		chromedp.Focus(chromedp.CSS("#terminal .xterm-helper-textarea")),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: line})
			return err
		}),
		pressEnter(0))
	p.wait(fmt.Sprintf("%q in the terminal", want), "document.querySelector('#terminal .xterm-rows').textContent.includes("+js(want)+")")
}

func TestConsole(t *testing.T) {
	chromium(t)
	e := start(t, nil, server.Options{})
	p := newPage(t)
	dl := t.TempDir()

	p.do("opening the console",
		chromedp.Navigate(e.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("new-sandbox")))
	if title := eval[string](p, "document.title + ' ' + document.querySelector('header .brand').textContent"); !strings.Contains(title, "compute") {
		t.Errorf("title and header %q do not name compute", title)
	}

	// A sandbox made in the page is one of the server's.
	id := p.openSandbox()
	list := decode(t, e.request("GET", wire.V1Path+"/sandboxes", nil))
	if !strings.Contains(fmt.Sprint(list), id) {
		t.Fatalf("the page shows sandbox %q, the server lists %v", id, list)
	}

	// A cell: typed, run with the button, its output shown.
	p.do("running a cell with the Run button",
		chromedp.SendKeys(chromedp.CSS(cell(1, "textarea.code")), "print(6*7)"),
		chromedp.Click(chromedp.CSS(cell(1, "button.run"))))
	p.wait("42 in the first cell", "document.querySelector("+js(cell(1, ".out pre.stdout"))+")?.textContent.trim() === '42'")

	// A chart, run with Shift+Enter: an <img> of the page with a PNG
	// that decoded.
	p.do("adding a cell", chromedp.Click(chromedp.ID("add-cell")))
	p.typeCell(2, "import matplotlib.pyplot as plt\nplt.figure(figsize=(5, 2.6))\nplt.plot([1, 3, 2, 5, 4], marker='o')\nplt.title('a chart from the sandbox')\nplt.show()")
	img := "document.querySelector(" + js(cell(2, ".out img.image-output")) + ")"
	p.wait("the chart", img+"?.complete && "+img+".naturalWidth > 0 && "+img+".src.startsWith('data:image/png;base64,')")

	// An error, with its traceback.
	p.typeCell(3, "def f(x):\n    return 1/x\nf(0)")
	p.wait("the error", "document.querySelector("+js(cell(3, ".out .error"))+")")
	errText := eval[string](p, "document.querySelector("+js(cell(3, ".out .error"))+").textContent")
	for _, want := range []string{"ZeroDivisionError", "division by zero", "return 1/x"} {
		if !strings.Contains(errText, want) {
			t.Errorf("the error shows %q, without %q", errText, want)
		}
	}
	if strings.Contains(errText, "\x1b[") {
		t.Errorf("the traceback shows raw ANSI codes: %q", errText)
	}

	// HTML from the sandbox (a pandas table): only in a sandboxed iframe
	// with an opaque origin, never in the console's document.
	p.typeCell(4, "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'], 'temp': [4.5, 19.0, 31.2]})")
	frame := "document.querySelector(" + js(cell(4, ".out iframe.html-output")) + ")"
	p.wait("the table's iframe to load", frame+"?.dataset.loaded")
	if got := eval[string](p, frame+".getAttribute('sandbox')"); got != "" {
		t.Errorf("the iframe's sandbox attribute is %q, want \"\" (every restriction, no allow-same-origin)", got)
	}
	if !eval[bool](p, frame+".srcdoc.includes('<table') && "+frame+".srcdoc.includes('Oslo')") {
		t.Errorf("the iframe does not hold the table: %s", eval[string](p, frame+".srcdoc"))
	}
	if eval[bool](p, frame+".contentDocument !== null") {
		t.Error("the page can reach into the output's iframe: it is not of an opaque origin")
	}
	if n := eval[int](p, "document.querySelectorAll('table.dataframe').length"); n != 0 {
		t.Errorf("%d pandas tables are in the console's own document", n)
	}

	// A Node cell, in its own context: the value of its last expression.
	p.do("choosing Node for cell 5", chromedp.SetValue(chromedp.CSS(cell(5, "select.lang")), "node"))
	p.typeCell(5, "const xs = [1, 2, 3].map(x => x * 7)\nxs.join('+')")
	p.wait("the Node result", "document.querySelector("+js(cell(5, ".out .result.main"))+")?.textContent.includes('7+14+21')")

	// The terminal: typed keys reach the shell, its output comes back,
	// and it follows the element's size.
	p.typeTerminal("echo hi-$((6*7))", "hi-42")
	p.do("making the terminal smaller", chromedp.Evaluate[chromedp.Void]("document.getElementById('terminal').style.height = '180px'"))
	p.wait("the terminal to fit its new size", "document.getElementById('terminal').dataset.rows < 15")
	rows := eval[string](p, "document.getElementById('terminal').dataset.rows")
	cols := eval[string](p, "document.getElementById('terminal').dataset.cols")
	p.typeTerminal("stty size", rows+" "+cols)
	p.do("giving the terminal its height back", chromedp.Evaluate[chromedp.Void]("document.getElementById('terminal').style.height = ''"))

	// Files: upload one, see it listed and on the server, download it
	// back, edit it.
	p.wait("the file list", "document.querySelector('.files-status')?.textContent.includes('entries')")
	content := "uploaded from the console " + hex.EncodeToString(randomBytes(8)) + "\n"
	local := filepath.Join(t.TempDir(), "upload.txt")
	if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	p.do("uploading a file", chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{local}))
	row := `.file-table tr[data-name="upload.txt"]`
	p.wait("the uploaded file in the list", "document.querySelector("+js(row)+")")
	dir := eval[string](p, "document.querySelector('.files code.path').textContent")
	remote := strings.TrimSuffix(dir, "/") + "/upload.txt"
	if got := fileOnServer(t, e, id, remote); got != content {
		t.Fatalf("the server has %q in %s, the upload was %q", got, remote, content)
	}

	progress := chromedp.Events(p.ctx, browser.DownloadProgress)
	p.do("downloading the file",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			events := true
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dl, EventsEnabled: &events,
			})
			return err
		}),
		chromedp.Click(chromedp.CSS(row+" button.download")))
	gctx, cancel := context.WithTimeout(p.ctx, stepGuard)
	var downloaded string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatalf("the download was cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			downloaded = filepath.Join(dl, ev.GUID)
			break
		}
		if gctx.Err() != nil {
			t.Fatalf("the download did not complete within the hang guard %v", stepGuard)
		}
	}
	cancel()
	if b, err := os.ReadFile(downloaded); err != nil || string(b) != content {
		t.Fatalf("the download holds %q (%v), want %q", b, err, content)
	}

	p.do("opening the file in the editor", chromedp.Click(chromedp.CSS(row+" a.file")))
	p.wait("the editor", "document.querySelector('.editor-text')?.value === "+js(content))
	edited := "edited in the console\n"
	p.do("saving the file",
		chromedp.SetValue(chromedp.CSS(".editor-text"), edited),
		chromedp.Click(chromedp.ID("save-file")))
	p.wait("the save", "document.querySelector('.files-status').textContent.startsWith('saved')")
	if got := fileOnServer(t, e, id, remote); got != edited {
		t.Errorf("after saving, the server has %q, want %q", got, edited)
	}

	if shot := os.Getenv("COMPUTE_CONSOLE_SCREENSHOT"); shot != "" {
		screenshot(t, p, shot)
	}

	// HTML with a script: shown, but the script does not run (the frame
	// has no allow-scripts), and could reach nothing of the console if it
	// did (an opaque origin). The browser logs the blocked script.
	p.do("choosing Python for cell 6", chromedp.SetValue(chromedp.CSS(cell(6, "select.lang")), "python"))
	p.typeCell(6, "from IPython.display import HTML\nHTML('<b id=\"x\">bold</b><script>parent.document.title = \"pwned\"</script>')")
	attack := "document.querySelector(" + js(cell(6, ".out iframe.html-output")) + ")"
	p.wait("the HTML output to load", attack+"?.dataset.loaded")
	if title := eval[string](p, "document.title"); title != "compute console" {
		t.Errorf("a script in an HTML output changed the console's title to %q", title)
	}

	// Back to the list, and destroy the sandbox from there.
	p.do("going back to the list",
		chromedp.Click(chromedp.CSS(".sandbox-head a")),
		chromedp.WaitVisible(chromedp.CSS(`.sandbox-table tr[data-id="`+id+`"] button.destroy`)))
	for range 2 { // the first click arms the button
		p.do("destroying the sandbox", chromedp.Click(chromedp.CSS(`.sandbox-table tr[data-id="`+id+`"] button.destroy`)))
	}
	p.wait("the sandbox to leave the list", `!document.querySelector('.sandbox-table tr[data-id="`+id+`"]')`)
	if n := e.srv.Stats().Sandboxes; n != 0 {
		t.Errorf("the server holds %d sandboxes after the destroy", n)
	}
	p.noErrors()
}

// TestConsoleToken: with a token the page asks for it, refuses a wrong
// one, and with the right one works, the terminal too (where the token
// travels as a WebSocket subprotocol).
func TestConsoleToken(t *testing.T) {
	chromium(t)
	const token = "console-test-token"
	e := start(t, nil, server.Options{Token: token})
	p := newPage(t)
	p.expect401 = true

	p.do("opening the console",
		chromedp.Navigate(e.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token-form")))
	p.do("giving a wrong token",
		chromedp.SendKeys(chromedp.ID("token-input"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	p.wait("the refusal", "document.getElementById('token-message')?.textContent.includes('refused')")
	if eval[bool](p, "!!document.getElementById('new-sandbox')") {
		t.Fatal("a wrong token showed the sandbox list")
	}
	p.do("giving the token",
		chromedp.SendKeys(chromedp.ID("token-input"), token),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("new-sandbox")))
	if got := eval[string](p, "sessionStorage.getItem('compute.token')"); got != token {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if got := eval[string](p, "document.cookie"); got != "" {
		t.Errorf("the page has cookies: %q", got)
	}

	p.openSandbox()
	p.do("running a cell",
		chromedp.SendKeys(chromedp.CSS(cell(1, "textarea.code")), "print(6*7)"),
		chromedp.Click(chromedp.CSS(cell(1, "button.run"))))
	p.wait("42 in the cell", "document.querySelector("+js(cell(1, ".out pre.stdout"))+")?.textContent.trim() === '42'")
	p.typeTerminal("echo token-$((40+2))", "token-42")

	// Colours are rendered, not shown as escape codes; a carriage return
	// starts its line again (a progress bar).
	p.do("adding a cell", chromedp.Click(chromedp.ID("add-cell")))
	p.typeCell(2, "print('\\x1b[31mred\\x1b[0m plain')\nprint('10%\\r100%')")
	out := "document.querySelector(" + js(cell(2, ".out pre.stdout")) + ")"
	p.wait("the coloured output", out+"?.textContent.includes('100%')")
	if got := eval[string](p, out+".textContent"); got != "red plain\n100%\n" {
		t.Errorf("the cell shows %q, want %q", got, "red plain\n100%\n")
	}
	if got := eval[string](p, out+".querySelector('span.ansi-fg-31')?.textContent || ''"); got != "red" {
		t.Errorf("the red span holds %q, want \"red\"", got)
	}

	// The shell's exit ends the terminal with its code; a new one can be
	// opened.
	p.typeTerminal("exit 3", "[exited with code 3]")
	p.wait("the exit in the state line", "document.getElementById('terminal-state').textContent === 'exited with code 3'")
	p.do("opening a new terminal", chromedp.Click(chromedp.CSS(".terminal .panel-head button")))
	p.typeTerminal("echo again-$((1+1))", "again-2")

	// A token that stops working (the server's was changed, or the user
	// forgot it) brings the form back.
	p.do("forgetting the token", chromedp.Click(chromedp.ID("forget-token")), chromedp.WaitVisible(chromedp.ID("token-form")))
	if got := eval[string](p, "sessionStorage.getItem('compute.token') || ''"); got != "" {
		t.Errorf("after Forget token, sessionStorage holds %q", got)
	}
	p.noErrors()
}

// TestConsoleNoTerminal: on a provider without terminals (the in-memory
// one of these tests, which needs neither the local provider nor Linux),
// the page works and its terminal pane says why it has no terminal.
func TestConsoleNoTerminal(t *testing.T) {
	chromium(t)
	e := start(t, &memProvider{}, server.Options{})
	p := newPage(t)
	p.noBrowserLog = true // the refused WebSocket handshake is logged by the browser
	p.do("opening the console", chromedp.Navigate(e.ts.URL+"/"))
	p.openSandbox()
	p.wait("the terminal's explanation", "document.getElementById('terminal-state').textContent.startsWith('could not open a terminal')")
	p.wait("the New terminal button", "!document.querySelector('.terminal .panel-head button').hidden")
	p.noErrors()
}

// TestConsoleServing checks the page's HTTP side: the policy headers,
// caching, the loopback rule of a server without a token, and that the
// page has no inline script.
func TestConsoleServing(t *testing.T) {
	e := start(t, &memProvider{}, server.Options{})

	resp := e.request("GET", "/", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": console.Policy,
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-cache",
		"X-Frame-Options":         "DENY",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	for _, directive := range []string{"default-src 'self'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'", "img-src 'self' data: blob:"} {
		if !strings.Contains(console.Policy, directive) {
			t.Errorf("the policy %q lacks %q", console.Policy, directive)
		}
	}
	if strings.Contains(console.Policy, "unsafe-eval") || regexp.MustCompile(`script-src[^;]*unsafe-inline`).MatchString(console.Policy) {
		t.Errorf("the policy allows inline or eval'd scripts: %q", console.Policy)
	}
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(body), -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("the page has an inline script: %s", m[0])
		}
	}
	if regexp.MustCompile(`(?i)\son[a-z]+=`).Match(body) {
		t.Error("the page has an inline event handler attribute")
	}
	if regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).Match(body) {
		t.Error("the page loads something from another site")
	}

	// Assets: types, revalidation with the ETag.
	for path, ctype := range map[string]string{
		"/console/app.js":                     "text/javascript",
		"/console/console.css":                "text/css",
		"/console/vendor/xterm/xterm.mjs":     "text/javascript",
		"/console/vendor/xterm/LICENSE.xterm": "text/plain",
	} {
		resp := e.request("GET", path, nil)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s = %d %q ETag %q, want 200 %s with an ETag", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("ETag"), ctype)
			continue
		}
		again := e.request("GET", path, nil, "If-None-Match", resp.Header.Get("ETag"))
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag = %d, want 304", path, again.StatusCode)
		}
	}
	for _, path := range []string{"/console/", "/console/nope.js", "/console/index.html", "/console/../api/compute/v1/sandboxes"} {
		resp := e.request("GET", path, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
	}
	resp = e.request("POST", "/", strings.NewReader("x"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}

	// Without a token, only this machine is served the page.
	resp = e.request("GET", "/", nil, "Origin", "http://evil.example")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET / from a page of another site = %d, want 403", resp.StatusCode)
	}
	for _, c := range []struct{ remote, host string }{{"192.0.2.7:4000", "127.0.0.1"}, {"127.0.0.1:4000", "evil.example"}} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr, req.Host = c.remote, c.host
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("GET / from %s for host %s = %d, want 403", c.remote, c.host, rec.Code)
		}
	}

	// With a token the page is public (it holds no secrets); the API
	// is not.
	tok := start(t, &memProvider{}, server.Options{Token: "t0k"})
	tok.token = ""
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	req.Host = "compute.example"
	rec := httptest.NewRecorder()
	tok.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET / from another machine on a server with a token = %d, want 200", rec.Code)
	}
	resp = tok.request("GET", wire.V1Path+"/sandboxes", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET sandboxes without the token = %d, want 401", resp.StatusCode)
	}
}

// fileOnServer reads a sandbox's file through the API.
func fileOnServer(t *testing.T, e *env, id, path string) string {
	t.Helper()
	resp := e.request("GET", wire.V1Path+"/sandboxes/"+id+"/files?"+url.Values{"path": {path}}.Encode(), nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s of %s = %d %s (%v)", path, id, resp.StatusCode, b, err)
	}
	return string(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// screenshot saves a PNG of the whole page at path (relative paths are
// from the repository root).
func screenshot(t *testing.T, p *page, path string) {
	t.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join("..", path)
	}
	// A viewport as tall as the page, and two frames for it to paint.
	height := eval[int](p, "Math.ceil(document.documentElement.scrollHeight)")
	p.do("sizing the viewport to the page",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1440, Height: int64(height), DeviceScaleFactor: 1})
			return err
		}),
		chromedp.Evaluate[chromedp.Void]("document.activeElement && document.activeElement.blur()"),
		chromedp.Evaluate[chromedp.Void]("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())))", chromedp.EvalAwaitPromise))
	ctx, cancel := context.WithTimeout(p.ctx, stepGuard)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved a screenshot of the console in %s (%d bytes)", path, len(png))
}
