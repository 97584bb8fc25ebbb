package compute

import "testing"

func TestDetectRuntime(t *testing.T) {
	for _, c := range []struct {
		code string
		want Runtime
	}{
		// Clear cases.
		{`print("Hello from Python!")`, Python},
		{"import json\nfrom datetime import datetime\nprint(json.dumps({'t': datetime.now().isoformat()}))", Python},
		{"def f():\n    return None\n", Python},
		{`raise Exception("Python test error")`, Python},
		{`name = "x"; print(f"hello {name}")`, Python},
		{"for i in range(3):\n    print(i)", Python},
		{`console.log("Hello, World!")`, Node},
		{`throw new Error("Test error")`, Node},
		{`const fs = require("fs"); console.log(fs.existsSync("/"))`, Node},
		{"function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));", Node},
		{`process.stdout.write(JSON.stringify({a: 1}))`, Node},

		// Words inside strings do not count.
		{`print("console.log")`, Python},
		{`print("const x = () => null === undefined")`, Python},
		{`console.log("import os")`, Node},
		{`console.log('def f(): print(None)')`, Node},
		{"console.log(`print(${1 + 1}) import sys`)", Node},
		{`let s = "def "; console.log(s)`, Node},
		{`print("it's \"quoted\" console.log")`, Python},

		// Ambiguous or unknown code is Python.
		{"", Python},
		{"x = 1", Python},
		{"1 + 1", Python},
		{"   \n\t", Python},
		{"print(1)\nconsole.log(1)", Python}, // one marker each: a tie
		{"import os\nconst x = 1", Python},   // a tie again

		// Node needs strictly more markers.
		{`const f = () => null`, Node},
		{`def f(): return None`, Python},
		{"let x = null\nprint(x)", Node},         // let, null vs print(
		{"x = None\nconsole.log(x)", Python},     // None vs console.
		{"var a = 1; if (a === 1) {}", Node},     // var, ===
		{"x = True\ny = False\ninput()", Python}, // True, False
	} {
		if got := DetectRuntime(c.code); got != c.want {
			t.Errorf("DetectRuntime(%q) = %q; want %q", c.code, got, c.want)
		}
	}
}

func TestStripStrings(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"no strings here", "no strings here"},
		{`print("hello")`, `print("")`},
		{`'a' + "b" + ` + "`c`", `'' + "" + ` + "``"},
		{`"a\"b" x`, `"" x`},
		{`'it\'s' x`, `'' x`},
		{`"back\\" x`, `"" x`},
		{`"it's" x`, `"" x`},
		{`'say "hi"' x`, `'' x`},
		{`f"x{y}" + f'z'`, `f"" + f''`},
		{"`multi\nline` x", "`` x"},
		{"\"unterminated\nprint(1)", "\"\nprint(1)"},
		{"'unterminated\nprint(1)", "'\nprint(1)"},
		{`"é 日本" é`, `"" é`},
		{`a \ b`, `a \ b`},
		{`x = "" + ''`, `x = "" + ''`},
	} {
		if got := stripStrings(c.in); got != c.want {
			t.Errorf("stripStrings(%q) = %q; want %q", c.in, got, c.want)
		}
	}
}

// Real interpreter reports, captured from /usr/bin/python3 (3.11) and
// /usr/bin/node (v20) run with an empty environment, for example
// `env -i /usr/bin/node -e 'x y'`.
const (
	pyInvalidSyntax = `  File "<string>", line 1
    invalid python syntax here!!!
            ^^^^^^
SyntaxError: invalid syntax
`
	pyMissingComma = `  File "<string>", line 1
    print("a" "b" c)
          ^^^^^^^^^
SyntaxError: invalid syntax. Perhaps you forgot a comma?
`
	pyIndentation = `  File "<string>", line 2
    print(1)
    ^
IndentationError: expected an indented block after 'if' statement on line 1
`
	pyTabStdin = `  File "<stdin>", line 3
    y = 2
TabError: inconsistent use of tabs and spaces in indentation
`
	pyException = `Traceback (most recent call last):
  File "<string>", line 1, in <module>
Exception: Python test error
`
	pyRaisedSyntaxError = `Traceback (most recent call last):
  File "<string>", line 1, in <module>
SyntaxError: x
`
	pyEvalSyntaxError = `Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "<string>", line 1
    (
    ^
SyntaxError: '(' was never closed
`
	pyJSONError = `Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/json/decoder.py", line 353, in raw_decode
    obj, end = self.scan_once(s, idx)
               ^^^^^^^^^^^^^^^^^^^^^^
json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)
`
	nodeInvalidSyntax = `[eval]:1
invalid syntax here!!!
        ^^^^^^

SyntaxError: Unexpected identifier 'syntax'
    at makeContextifyScript (node:internal/vm:185:14)
    at node:internal/process/execution:107:22
    at [eval]-wrapper:6:24
    at runScript (node:internal/process/execution:101:62)
    at evalScript (node:internal/process/execution:133:3)
    at node:internal/main/eval_string:51:3

Node.js v20.20.2
`
	nodeInvalidSyntaxStdin = `[stdin]:1
x y
  ^

SyntaxError: Unexpected identifier 'y'
    at makeContextifyScript (node:internal/vm:185:14)
    at node:internal/process/execution:107:22
    at [stdin]-wrapper:6:24
    at runScript (node:internal/process/execution:101:62)
    at evalScript (node:internal/process/execution:133:3)
    at node:internal/main/eval_stdin:32:5
    at Socket.<anonymous> (node:internal/process/execution:234:5)
    at Socket.emit (node:events:536:35)
    at endReadableNT (node:internal/streams/readable:1698:12)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21)

Node.js v20.20.2
`
	nodeError = `[eval]:1
throw new Error("Test error")
^

Error: Test error
    at [eval]:1:7
    at runScriptInThisContext (node:internal/vm:209:10)
    at node:internal/process/execution:118:14
    at [eval]-wrapper:6:24
    at runScript (node:internal/process/execution:101:62)
    at evalScript (node:internal/process/execution:133:3)
    at node:internal/main/eval_string:51:3

Node.js v20.20.2
`
	nodeThrownSyntaxError = `[eval]:1
throw new SyntaxError("x")
^

SyntaxError: x
    at [eval]:1:7
    at runScriptInThisContext (node:internal/vm:209:10)
    at node:internal/process/execution:118:14
    at [eval]-wrapper:6:24
    at runScript (node:internal/process/execution:101:62)
    at evalScript (node:internal/process/execution:133:3)
    at node:internal/main/eval_string:51:3

Node.js v20.20.2
`
	nodeJSONParse = `<anonymous_script>:1
{

SyntaxError: Expected property name or '}' in JSON at position 1
    at JSON.parse (<anonymous>)
    at [eval]:1:6
    at runScriptInThisContext (node:internal/vm:209:10)
    at node:internal/process/execution:118:14
    at [eval]-wrapper:6:24
    at runScript (node:internal/process/execution:101:62)
    at evalScript (node:internal/process/execution:133:3)
    at node:internal/main/eval_string:51:3

Node.js v20.20.2
`
	nodeEvalInFunction = "<anonymous_script>:1\n(\n \n\nSyntaxError: Unexpected end of input\n" +
		"    at f ([eval]:1:16)\n" +
		"    at [eval]:2:1\n" +
		"    at runScriptInThisContext (node:internal/vm:209:10)\n" +
		"    at node:internal/process/execution:118:14\n" +
		"    at [eval]-wrapper:6:24\n" +
		"    at runScript (node:internal/process/execution:101:62)\n" +
		"    at evalScript (node:internal/process/execution:133:3)\n" +
		"    at node:internal/main/eval_string:51:3\n\nNode.js v20.20.2\n"
	nodeEvalStdin = "<anonymous_script>:1\n(\n \n\nSyntaxError: Unexpected end of input\n" +
		"    at [stdin]:1:1\n" +
		"    at runScriptInThisContext (node:internal/vm:209:10)\n" +
		"    at node:internal/process/execution:118:14\n" +
		"    at [stdin]-wrapper:6:24\n" +
		"    at runScript (node:internal/process/execution:101:62)\n" +
		"    at evalScript (node:internal/process/execution:133:3)\n" +
		"    at node:internal/main/eval_stdin:32:5\n" +
		"    at Socket.<anonymous> (node:internal/process/execution:234:5)\n" +
		"    at Socket.emit (node:events:536:35)\n" +
		"    at endReadableNT (node:internal/streams/readable:1698:12)\n\nNode.js v20.20.2\n"
)

func TestIsSyntaxError(t *testing.T) {
	for _, c := range []struct {
		name   string
		rt     Runtime
		stderr string
		want   bool
	}{
		{"python invalid syntax", Python, pyInvalidSyntax, true},
		{"python missing comma", Python, pyMissingComma, true},
		{"python indentation", Python, pyIndentation, true},
		{"python tab error on stdin", Python, pyTabStdin, true},
		{"python exception", Python, pyException, false},
		{"python raise SyntaxError", Python, pyRaisedSyntaxError, false},
		{"python eval of bad code", Python, pyEvalSyntaxError, false},
		{"python other error", Python, pyJSONError, false},
		{"python empty stderr", Python, "", false},
		{"python message mentions SyntaxError", Python, "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nValueError: not a SyntaxError\n", false},

		{"node invalid syntax", Node, nodeInvalidSyntax, true},
		{"node invalid syntax on stdin", Node, nodeInvalidSyntaxStdin, true},
		{"node error", Node, nodeError, false},
		{"node throw SyntaxError", Node, nodeThrownSyntaxError, false},
		{"node JSON.parse", Node, nodeJSONParse, false},
		{"node eval in a function", Node, nodeEvalInFunction, false},
		{"node eval on stdin", Node, nodeEvalStdin, false},
		{"node empty stderr", Node, "", false},
		{"node ES module JSON.parse", Node, "<anonymous_script>:1\n{\n\nSyntaxError: Expected property name or '}' in JSON at position 1\n    at JSON.parse (<anonymous>)\n    at file:///work/[eval1]:1:27\n    at ModuleJob.run (node:internal/modules/esm/module_job:325:25)\n", false},
		{"node ES module invalid syntax", Node, "file:///work/[eval1]:1\nimport os from \"os\"; x = ;\n                         ^\n\nSyntaxError: Unexpected token ';'\n    at compileSourceTextModule (node:internal/modules/esm/utils:346:16)\n    at ModuleLoader.eval (node:internal/modules/esm/loader:241:18)\n", true},

		{"unknown runtime", Runtime("ruby"), pyInvalidSyntax, false},
	} {
		if got := isSyntaxError(c.rt, c.stderr); got != c.want {
			t.Errorf("%s: isSyntaxError(%q, %q) = %v; want %v", c.name, c.rt, c.stderr, got, c.want)
		}
	}
}
