package compute

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// CodeOptions are RunCode's options; the zero value is valid. Apart from
// Runtime and Args they mean what RunOptions' fields of the same names
// mean.
type CodeOptions struct {
	// Runtime picks the interpreter; empty means the sandbox's default
	// runtime, else DetectRuntime.
	Runtime Runtime
	// Args are the program's arguments (sys.argv[1:] in Python,
	// process.argv.slice(2) in Node).
	Args []string
	// Env is added to (and overrides) the sandbox's environment.
	Env map[string]string
	// Dir is the working directory; relative to the sandbox's default one.
	Dir string
	// Stdin, when set, is the program's own input (the code itself
	// travels separately).
	Stdin io.Reader
	// Timeout kills the program and all it started after this long; the
	// result then has exit code 124 and the error matches ErrTimeout.
	Timeout time.Duration
	// Stdout and Stderr, when set, receive the output as it is printed
	// (streaming), in addition to the Result.
	Stdout, Stderr io.Writer
	// MaxOutput caps each of Result.Stdout and Result.Stderr; 0 means
	// DefaultMaxOutput, negative keeps nothing (the writers still get it).
	MaxOutput int
}

// classifyBytes is how much of stderr RunCode keeps for itself to tell a
// syntax error from a runtime one, whatever RunOptions.MaxOutput says.
const classifyBytes = 64 << 10

// maxArgCode is the largest program passed as an argument (-c / -e); Linux
// refuses single arguments over 128 KiB. Larger programs go on stdin.
const maxArgCode = 96 << 10

// RunCode runs a program in the sandbox with python3 or node and waits for
// it. A program the interpreter rejects before running (a syntax error)
// gives a *SyntaxError; an error while running is a Result with a non-zero
// ExitCode and the traceback in Stderr, not a Go error. The code runs
// exactly as given, whatever bytes it holds (it is never put through a
// shell).
func (s *Sandbox) RunCode(ctx context.Context, code string, opts *CodeOptions) (*Result, error) {
	if opts == nil {
		opts = &CodeOptions{}
	}
	if strings.ContainsRune(code, 0) {
		return nil, fmt.Errorf("compute: code contains a NUL byte: %w", ErrInvalid)
	}
	rt := opts.Runtime
	if rt == "" {
		rt = s.runtime
	}
	if rt == "" {
		rt = DetectRuntime(code)
	}
	ro := RunOptions{Env: opts.Env, Dir: opts.Dir, Stdin: opts.Stdin, Timeout: opts.Timeout,
		Stdout: opts.Stdout, Stderr: opts.Stderr, MaxOutput: opts.MaxOutput}
	var argv []string
	switch rt {
	case Python:
		// -u: output reaches the caller as it is printed, as Node's does,
		// not in blocks when the buffer fills or at exit.
		argv = []string{"python3", "-u", "-c", code}
	case Node:
		argv = []string{"node", "-e", code}
	default:
		return nil, fmt.Errorf("compute: unknown runtime %q (want %q or %q): %w", rt, Python, Node, ErrInvalid)
	}
	onStdin := len(code) > maxArgCode
	if onStdin {
		if ro.Stdin != nil {
			return nil, fmt.Errorf("compute: code of %d bytes is passed on stdin, so it cannot be combined with CodeOptions.Stdin; write the input to a file instead: %w", len(code), ErrInvalid)
		}
		argv = append(argv[:len(argv)-2], "-")
		ro.Stdin = strings.NewReader(code)
	}
	if len(opts.Args) > 0 {
		if rt == Node && !onStdin {
			// "--" ends node's options; "-" stands where the script name
			// would be, so process.argv reads the same as with code on
			// stdin: [node, "-", args...].
			argv = append(argv, "--", "-")
		}
		argv = append(argv, opts.Args...)
	}
	// Classification reads stderr, which the caller may be streaming away
	// uncaptured: keep the start of it here.
	head := &cappedBuffer{max: classifyBytes}
	if ro.Stderr != nil {
		ro.Stderr = io.MultiWriter(ro.Stderr, head)
	} else if ro.MaxOutput < 0 {
		ro.Stderr = head
	}
	res, err := s.Run(ctx, argv, &ro)
	if res == nil {
		return nil, err
	}
	res.Runtime = rt
	stderr := res.Stderr
	if head.buf.Len() > 0 {
		stderr = head.String()
	}
	if res.ExitCode == ExitCodeNotFound && err == nil && strings.Contains(stderr, "command not found") {
		return res, fmt.Errorf("compute: runtime %s is not installed in this sandbox (%s not found): %w", rt, argv[0], ErrUnsupported)
	}
	if err == nil && res.ExitCode != 0 && isSyntaxError(rt, stderr) {
		return res, &SyntaxError{Runtime: rt, Message: stderr, Result: res}
	}
	return res, err
}

// isSyntaxError tells a compile-time rejection from a runtime error: both
// interpreters print "SyntaxError", but only a runtime error has a stack
// through the user's code (Python's "Traceback" header, Node's "at [eval]"
// frames), so `raise SyntaxError()` or `eval("(")` stay runtime errors.
func isSyntaxError(rt Runtime, stderr string) bool {
	switch rt {
	case Python:
		return pySyntax.MatchString(stderr) && !strings.Contains(stderr, "Traceback (most recent call last)")
	case Node:
		return strings.Contains(stderr, "SyntaxError") && !nodeUserFrame.MatchString(stderr)
	}
	return false
}

var (
	pySyntax = regexp.MustCompile(`(?m)^(SyntaxError|IndentationError|TabError)\b`)
	// A frame in the user's code: "at f ([eval]:1:20)", "at [stdin]:1:36",
	// ES-module code's "at file:///dir/[eval1]:1:27"; not node's own
	// "[eval]-wrapper" frames.
	nodeUserFrame = regexp.MustCompile(`(?m)^\s+at .*\[(eval|stdin)\d*\]:\d`)
)

// Markers that DetectRuntime counts, after removing string literals.
var (
	pythonMarkers = []string{"print(", "import ", "def ", "sys.", "json.", `f"`, "f'", "raise ", "elif ", "self.", "lambda ", "None", "True", "False", "__name__", "range(", "len("}
	nodeMarkers   = []string{"console.", "process.", "require(", "module.exports", "__dirname", "__filename", "throw new ", "new Error(", "=>", "const ", "let ", "var ", "function", "===", "!==", "null", "undefined", "Math.", "JSON."}
)

// DetectRuntime guesses the runtime of code, for RunCode calls that name
// none. The rule: remove the contents of string literals, count how many
// distinct Python markers (print(, import, def, raise, f-strings, None,
// True, ...) and Node markers (console., require(, const, let, =>, ===,
// null, undefined, ...) appear; Node wins only with strictly more markers.
// Everything else, ambiguous or unknown code included, is Python.
func DetectRuntime(code string) Runtime {
	bare := stripStrings(code)
	score := func(markers []string) int {
		n := 0
		for _, m := range markers {
			if strings.Contains(bare, m) {
				n++
			}
		}
		return n
	}
	if score(nodeMarkers) > score(pythonMarkers) {
		return Node
	}
	return Python
}

// stripStrings blanks the inside of '...', "..." and `...` literals so that
// words inside strings do not count as markers; the quotes stay, so
// f"..." still reads as an f-string.
func stripStrings(code string) string {
	var b strings.Builder
	var quote rune
	escaped := false
	for _, r := range code {
		switch {
		case quote == 0:
			b.WriteRune(r)
			if r == '\'' || r == '"' || r == '`' {
				quote = r
			}
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case r == quote:
			b.WriteRune(r)
			quote = 0
		case r == '\n' && quote != '`':
			// Unterminated single-line string (or a triple-quoted one):
			// resume scanning at the next line.
			b.WriteRune(r)
			quote = 0
		}
	}
	return b.String()
}
