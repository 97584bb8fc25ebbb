package main

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/computesdk-go/compute/driver"
)

// imageStepFlags are --image-step and --dockerfile, beside --image.
type imageStepFlags struct {
	steps      []string
	dockerfile string
	context    string
	// fsys is the build context COPY steps copy from (--context, or the
	// Dockerfile's directory), set by resolve when a step copies.
	fsys fs.FS
}

func (f *imageStepFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.steps, "image-step", nil, `a Dockerfile step applied on top of --image, in order: 'RUN cmd', 'ENV K=V', 'WORKDIR dir' or 'COPY src... dest' (repeatable). Built once and cached (Modal: by Modal; local: in the image store)`)
	fs.StringVar(&f.dockerfile, "dockerfile", "", `a Dockerfile of one FROM line (the image, instead of --image) and RUN, ENV, WORKDIR and COPY lines (steps, before any --image-step)`)
	fs.StringVar(&f.context, "context", "", `the directory COPY steps copy from (default: the --dockerfile's directory, else the current one); links in it may not lead out of it`)
}

// resolve returns the image and its steps from --image, --dockerfile and
// --image-step.
func (f *imageStepFlags) resolve(image string) (string, []string, error) {
	steps := f.steps
	if f.dockerfile != "" {
		if image != "" {
			return "", nil, usagef("--image and --dockerfile both name the image; give one (the Dockerfile's FROM line is its image)")
		}
		from, fileSteps, err := readDockerfile(f.dockerfile)
		if err != nil {
			return "", nil, err
		}
		image, steps = from, append(fileSteps, steps...)
	}
	if len(steps) > 0 && image == "" {
		return "", nil, usagef("--image-step needs a base image: --image or --dockerfile")
	}
	if err := driver.ValidateImageSteps(image, steps); err != nil {
		return "", nil, usagef("%s", strings.TrimPrefix(err.Error(), "compute: "))
	}
	copies := false
	for _, step := range steps {
		if instr, _, _ := driver.ParseImageStep(step); instr == "COPY" {
			copies = true
		}
	}
	switch {
	case copies:
		dir := f.context
		if dir == "" && f.dockerfile != "" {
			dir = filepath.Dir(f.dockerfile)
		}
		if dir == "" {
			dir = "."
		}
		// An os.Root: a link in the context cannot lead COPY out of it.
		// (It stays open for the invocation: the create reads from it.)
		root, err := os.OpenRoot(dir)
		if err != nil {
			return "", nil, usagef("--context: %v", err)
		}
		f.fsys = root.FS()
	case f.context != "":
		return "", nil, usagef("--context goes with COPY steps, and there are none")
	}
	return image, steps, nil
}

// readDockerfile reads a Dockerfile of the subset image steps take: one
// FROM, then RUN, ENV, WORKDIR and COPY. Blank lines and # comments are
// skipped; a line ending in a backslash continues on the next.
func readDockerfile(name string) (image string, steps []string, err error) {
	f, err := os.Open(name)
	if err != nil {
		return "", nil, usagef("--dockerfile: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, driver.MaxImageStep+1)
	var cont strings.Builder
	line, start := 0, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 {
			start = line
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
		} else if strings.HasPrefix(text, "#") {
			continue // comments inside a continued instruction are dropped, as Docker does
		}
		if body, ok := strings.CutSuffix(text, `\`); ok {
			cont.WriteString(body)
			cont.WriteByte(' ')
			continue
		}
		cont.WriteString(text)
		instr := strings.TrimSpace(cont.String())
		cont.Reset()
		word, arg, _ := strings.Cut(instr, " ")
		arg = strings.TrimSpace(arg)
		switch strings.ToUpper(word) {
		case "FROM":
			if image != "" {
				return "", nil, usagef("--dockerfile %s:%d: a second FROM; multi-stage builds are not supported (one FROM, then RUN, ENV and WORKDIR)", name, start)
			}
			if arg == "" || strings.HasPrefix(arg, "--") || strings.Contains(arg, " ") {
				return "", nil, usagef("--dockerfile %s:%d: FROM takes one image reference (no --platform, no AS name), got %q", name, start, arg)
			}
			image = arg
		case "RUN", "ENV", "WORKDIR", "COPY":
			if image == "" {
				return "", nil, usagef("--dockerfile %s:%d: %s before FROM; the first instruction must be FROM", name, start, strings.ToUpper(word))
			}
			if _, _, err := driver.ParseImageStep(instr); err != nil {
				return "", nil, usagef("--dockerfile %s:%d: %v", name, start, err)
			}
			steps = append(steps, instr)
		default:
			return "", nil, usagef("--dockerfile %s:%d: %s is not supported; a Dockerfile here has one FROM and then RUN, ENV, WORKDIR and COPY lines only", name, start, strings.ToUpper(word))
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, usagef("--dockerfile %s: %v", name, err)
	}
	if cont.Len() > 0 {
		return "", nil, usagef("--dockerfile %s:%d: the last line ends in a backslash", name, start)
	}
	if image == "" {
		return "", nil, usagef("--dockerfile %s: no FROM line; the first instruction must be FROM image", name)
	}
	return image, steps, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
