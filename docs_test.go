package compute_test

// The tests in this file keep README.md and docs/*.md honest:
//
//   - TestDocsGoSnippets compiles and vets every ```go block that is a
//     whole file (it starts with a package clause), all of them in one go
//     vet run over one temporary module that uses this checkout. A block
//     that is only a fragment must say so with the info string
//     ```go fragment; it is skipped, saying why.
//   - TestDocsShellCommands checks that the compute command lines of
//     ```sh blocks (compute ..., ./compute ..., go run ./cmd/compute ...,
//     go run ./PATH) name only files and directories that exist here.
//   - TestDocsLinks checks that relative links point at files that exist,
//     and that #anchors name a heading of the page they point into.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// docFile is a Markdown file of the documentation.
type docFile struct {
	path  string // relative to the repository root, slash-separated
	lines []string
}

// docFiles reads README.md and docs/*.md.
func docFiles(t *testing.T) []docFile {
	t.Helper()
	names := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, more...)
	var docs []docFile
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, docFile{path: filepath.ToSlash(name), lines: strings.Split(string(b), "\n")})
	}
	if len(docs) < 2 {
		t.Fatalf("found only %v: the docs/ pages are missing", names)
	}
	return docs
}

// fence is one fenced code block of a document.
type fence struct {
	doc  string
	line int    // 1-based line of the opening fence
	lang string // first word of the info string
	attr []string
	body string
}

func (f fence) where() string { return fmt.Sprintf("%s:%d", f.doc, f.line) }

// fences returns the fenced code blocks (``` or ~~~) of a document,
// indented ones (in lists) included, with their indentation removed.
func fences(d docFile) []fence {
	var out []fence
	for i := 0; i < len(d.lines); i++ {
		line := d.lines[i]
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		marker := ""
		for _, m := range []string{"```", "~~~"} {
			if strings.HasPrefix(trimmed, m) {
				marker = m
			}
		}
		if marker == "" {
			continue
		}
		info := strings.Fields(strings.TrimLeft(trimmed, marker[:1]))
		f := fence{doc: d.path, line: i + 1}
		if len(info) > 0 {
			f.lang, f.attr = info[0], info[1:]
		}
		var body []string
		for i++; i < len(d.lines); i++ {
			l := d.lines[i]
			if strings.HasPrefix(strings.TrimLeft(l, " "), marker) {
				break
			}
			cut := min(indent, len(l)-len(strings.TrimLeft(l, " ")))
			body = append(body, l[cut:])
		}
		f.body = strings.Join(body, "\n") + "\n"
		out = append(out, f)
	}
	return out
}

// startsWithPackage reports whether Go source begins with its package
// clause (comments and blank lines may come first).
func startsWithPackage(src string) bool {
	inBlock := false
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case inBlock:
			if strings.Contains(l, "*/") {
				inBlock = false
			}
		case l == "" || strings.HasPrefix(l, "//"):
		case strings.HasPrefix(l, "/*"):
			inBlock = !strings.Contains(l, "*/")
		default:
			return strings.HasPrefix(l, "package ")
		}
	}
	return false
}

var vetLine = regexp.MustCompile(`(snip\d+)/[^:\s]+\.go:(\d+)(:\d+)?:\s*(.*)`)

func TestDocsGoSnippets(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH, so the snippets cannot be compiled")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	type snippet struct {
		fence
		dir string
	}
	var programs []snippet
	for _, d := range docFiles(t) {
		for _, f := range fences(d) {
			if f.lang != "go" {
				continue
			}
			switch {
			case slices.Contains(f.attr, "fragment"):
				t.Run(f.where(), func(t *testing.T) {
					t.Skip("marked ```go fragment: not a whole file, so not compiled")
				})
			case startsWithPackage(f.body):
				programs = append(programs, snippet{fence: f, dir: fmt.Sprintf("snip%03d", len(programs))})
			default:
				t.Errorf("%s: a ```go block without a package clause: make it a whole file, or mark it ```go fragment", f.where())
			}
		}
	}
	if len(programs) == 0 {
		t.Fatal("no ```go block is a whole file: nothing compiled")
	}

	// One module for all of them, requiring this checkout by replace, with
	// this module's requirements and sums, so that nothing needs the
	// network (GOPROXY=off).
	mod := t.TempDir()
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^module\s+\S+`).ReplaceAllString(string(gomod), "module example.com/docsnippets")
	text += fmt.Sprintf("\nrequire github.com/computesdk-go/compute v0.0.0-00010101000000-000000000000\n\nreplace github.com/computesdk-go/compute => %s\n", root)
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, err := os.ReadFile("go.sum"); err == nil {
		if err := os.WriteFile(filepath.Join(mod, "go.sum"), sum, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range programs {
		name := "main.go"
		if regexp.MustCompile(`(?m)^func (Test|Benchmark|Example|Fuzz)`).MatchString(s.body) {
			name = "doc_test.go"
		}
		if err := os.MkdirAll(filepath.Join(mod, s.dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, s.dir, name), []byte(s.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	cmd := exec.Command(goTool, "vet", "./...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(),
		"GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off", "GONOSUMDB=*", "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	t.Logf("go vet of %d snippets: %v", len(programs), time.Since(start).Round(time.Millisecond))

	// Report each problem at its line in the document.
	problems := map[string][]string{}
	matched := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		m := vetLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		matched = true
		problems[m[1]] = append(problems[m[1]], m[2]+"\x00"+m[4])
	}
	for _, s := range programs {
		t.Run(s.where(), func(t *testing.T) {
			for _, p := range problems[s.dir] {
				line, msg, _ := strings.Cut(p, "\x00")
				var n int
				fmt.Sscan(line, &n)
				t.Errorf("%s:%d: %s", s.doc, s.line+n, msg)
			}
		})
	}
	if err != nil {
		if !matched {
			t.Fatalf("go vet over the snippets failed: %v\n%s", err, out)
		}
		t.Logf("go vet output:\n%s", out)
	}
}

// shellWords splits one shell command line into words and operators
// (|, ||, &&, ;, &, $(, `, (, ), and redirections), with quotes removed.
// Words that came from quotes, or hold a $ expansion, are marked so that
// they are not mistaken for paths: quoted words start with "\x00".
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	have, quoted := false, false
	flush := func() {
		if have {
			w := cur.String()
			if quoted {
				w = "\x00" + w
			}
			words = append(words, w)
		}
		cur.Reset()
		have, quoted = false, false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				j = len(line) - i - 1
			}
			cur.WriteString(line[i+1 : i+1+j])
			have, quoted = true, true
			i += j + 1
		case c == '\\' && i+1 < len(line):
			cur.WriteByte(line[i+1])
			have = true
			i++
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !have:
			flush()
			return words
		case c == '$' && i+1 < len(line) && line[i+1] == '(':
			flush()
			words = append(words, "$(")
			i++
		case strings.IndexByte("|&;()`<>", c) >= 0:
			flush()
			op := string(c)
			for i+1 < len(line) && strings.IndexByte("|&<>", line[i+1]) >= 0 && len(op) < 2 {
				op += string(line[i+1])
				i++
			}
			words = append(words, op)
		default:
			// A digit right before > or < is a descriptor: 2>&1.
			if c >= '0' && c <= '9' && !have && i+1 < len(line) && (line[i+1] == '>' || line[i+1] == '<') {
				continue
			}
			cur.WriteByte(c)
			have = true
		}
	}
	flush()
	return words
}

// commandSegments splits words at the operators that separate commands;
// the word after a redirection is dropped (it is a file the shell makes or
// reads, not an argument).
func commandSegments(words []string) [][]string {
	var segs [][]string
	var cur []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == ">" || w == ">>" || w == "<" || w == ">&" || w == "<<":
			i++ // the target
		case strings.Trim(w, "|&;()`$") == "" && w != "":
			if len(cur) > 0 {
				segs = append(segs, cur)
			}
			cur = nil
		default:
			cur = append(cur, w)
		}
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// Flags of compute that take no value; every other flag takes one (the
// next word, unless written --flag=value).
var computeBoolFlags = map[string]bool{
	"-h": true, "--help": true, "--network": true, "--stdin": true, "-i": true,
	"--json": true, "-q": true, "--quiet": true, "--allow-network": true,
}

// Flags of compute whose value is a file or directory of this machine.
var computeHostPathFlags = map[string]bool{"--tls-cert": true, "--tls-key": true, "--tokens": true}

// computeSubcommands are the words that select a subcommand.
var computeSubcommands = map[string]bool{
	"run": true, "exec": true, "serve": true, "bench": true, "version": true, "help": true,
	"sandbox": true, "create": true, "list": true, "info": true, "url": true, "destroy": true,
	"modal": true, "emulate": true,
}

// hostPaths returns the words of one compute invocation (the words after
// "compute") that name files or directories of this machine: the FILE of
// run, and the values of the flags in computeHostPathFlags. The arguments
// of the command run in the sandbox are not looked at: they are the
// sandbox's paths.
func hostPaths(args []string) []string {
	var paths []string
	var sub []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			name, _, hasValue := strings.Cut(a, "=")
			if computeBoolFlags[name] || hasValue {
				if hasValue && computeHostPathFlags[name] {
					paths = append(paths, a[len(name)+1:])
				}
				continue
			}
			if i+1 < len(args) {
				i++
				inRun := slices.Equal(sub, []string{"run"})
				if inRun && (name == "-c" || name == "--code") {
					return paths // the program is the code; what follows is its arguments
				}
				if computeHostPathFlags[name] || (name == "--project" && inRun && args[i] != "none") {
					paths = append(paths, args[i])
				}
			}
			continue
		}
		if computeSubcommands[a] && (len(sub) == 0 || sub[0] == "sandbox" || sub[0] == "modal") && len(sub) < 2 {
			sub = append(sub, a)
			continue
		}
		// The first positional argument.
		if slices.Equal(sub, []string{"run"}) && a != "-" {
			paths = append(paths, a)
		}
		break
	}
	return paths
}

func TestDocsShellCommands(t *testing.T) {
	checked := 0
	for _, d := range docFiles(t) {
		for _, f := range fences(d) {
			if f.lang != "sh" && f.lang != "bash" && f.lang != "shell" {
				continue
			}
			lines := strings.Split(strings.ReplaceAll(f.body, "\\\n", " "), "\n")
			for n, line := range lines {
				for _, seg := range commandSegments(shellWords(line)) {
					// Leading assignments and wrappers: FOO=bar, sudo, time.
					for len(seg) > 0 && (strings.Contains(seg[0], "=") && !strings.HasPrefix(seg[0], "-") || seg[0] == "time" || seg[0] == "sudo" || seg[0] == "env") {
						seg = seg[1:]
					}
					if len(seg) == 0 {
						continue
					}
					var paths []string
					switch {
					case seg[0] == "compute" || seg[0] == "./compute":
						paths = hostPaths(seg[1:])
					case seg[0] == "go" && len(seg) > 2 && seg[1] == "run" && strings.TrimPrefix(seg[2], "./") == "cmd/compute":
						paths = append([]string{seg[2]}, hostPaths(seg[3:])...)
					case seg[0] == "go" && len(seg) > 1 && (seg[1] == "run" || seg[1] == "build" || seg[1] == "test" || seg[1] == "vet"):
						for _, a := range seg[2:] {
							if strings.HasPrefix(a, "./") {
								paths = append(paths, strings.TrimSuffix(strings.TrimSuffix(a, "..."), "/"))
							}
						}
					default:
						continue
					}
					checked++
					for _, p := range paths {
						if strings.HasPrefix(p, "\x00") || strings.Contains(p, "$") || p == "" {
							continue // a quoted word or a variable: the reader's own
						}
						if p == "." {
							continue
						}
						if _, err := os.Stat(filepath.FromSlash(p)); err != nil {
							t.Errorf("%s:%d: %q names %s, which does not exist in this repository", f.doc, f.line+1+n, strings.TrimSpace(line), p)
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no compute command line found in any ```sh block")
	}
	t.Logf("checked %d command lines", checked)
}

var (
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeader = regexp.MustCompile(`^#{1,6}\s+(.*)$`)
)

// slug is GitHub's anchor for a heading.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a document's headings (outside code).
func anchors(d docFile) map[string]bool {
	set := map[string]bool{}
	inCode := false
	for _, l := range d.lines {
		if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			inCode = !inCode
			continue
		}
		if m := mdHeader.FindStringSubmatch(l); m != nil && !inCode {
			s := slug(m[1])
			for i := 1; set[s]; i++ {
				s = fmt.Sprintf("%s-%d", slug(m[1]), i)
			}
			set[s] = true
		}
	}
	return set
}

func TestDocsLinks(t *testing.T) {
	docs := docFiles(t)
	byPath := map[string]docFile{}
	for _, d := range docs {
		byPath[d.path] = d
	}
	for _, d := range docs {
		inCode := false
		for n, l := range d.lines {
			if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
				inCode = !inCode
				continue
			}
			if inCode {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				path := d.path
				if file != "" {
					path = filepath.ToSlash(filepath.Join(filepath.Dir(d.path), file))
					if _, err := os.Stat(filepath.FromSlash(path)); err != nil {
						t.Errorf("%s:%d: link to %s: %v", d.path, n+1, target, err)
						continue
					}
				}
				if anchor != "" {
					td, ok := byPath[path]
					if !ok {
						continue // an anchor into a file that is not a doc page
					}
					if !anchors(td)[anchor] {
						t.Errorf("%s:%d: link to %s: %s has no heading with anchor #%s", d.path, n+1, target, path, anchor)
					}
				}
			}
		}
	}
}
