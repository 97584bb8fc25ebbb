package modal

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/computesdk-go/compute/driver"
)

// Image steps on Modal: RUN, ENV and WORKDIR go to Modal as they are
// (the SDK's Dockerfile commands). COPY cannot: the SDK uploads no build
// context (it refuses COPY from one). So a COPY step becomes RUN steps
// that write its files, their content base64 in the command, with the
// image's sh, mkdir, base64 and chmod. That is fit for small files only:
// MaxCopyBytes in all.

// MaxCopyBytes bounds the bytes that COPY steps copy on Modal, all steps
// together (their content travels inside the image's definition).
const MaxCopyBytes = 256 << 10

// maxScript bounds one generated RUN step: under driver.MaxImageStep, so
// that whatever builds the steps takes them as a user's.
const maxScript = 12 << 10

// workdirMark stands for the working directory when a COPY's destination
// is relative: the generated commands use a relative path there, which
// the image's WORKDIR resolves as COPY's would.
const workdirMark = "/.compute-workdir"

// modalSteps returns steps with each COPY replaced by RUN steps that
// write its files from fsys.
func modalSteps(steps []string, fsys fs.FS) ([]string, error) {
	out := make([]string, 0, len(steps))
	dir := "" // the WORKDIR so far, when known
	total := 0
	for i, step := range steps {
		instr, arg, err := driver.ParseImageStep(step)
		if err != nil {
			return nil, fmt.Errorf("modal: image step %d (%.80q): %v: %w", i+1, step, err, driver.ErrInvalid)
		}
		switch instr {
		case "WORKDIR":
			if path.IsAbs(arg) {
				dir = path.Clean(arg)
			} else if dir != "" {
				dir = path.Join(dir, arg)
			}
		case "COPY":
			base := dir
			if base == "" {
				base = workdirMark
			}
			files, err := driver.ResolveCopy(fsys, arg, base)
			if err != nil {
				return nil, fmt.Errorf("modal: image step %d (%.80q): %w", i+1, step, err)
			}
			for _, f := range files {
				total += len(f.Data)
			}
			if total > MaxCopyBytes {
				return nil, fmt.Errorf("modal: image step %d (%.80q): COPY steps copy %d bytes, more than the %d Modal images can carry in their definition (the Go SDK uploads no build context); put large files in the base image or fetch them in a RUN step: %w", i+1, step, total, MaxCopyBytes, driver.ErrUnsupported)
			}
			out = append(out, copyScripts(files)...)
			continue
		}
		out = append(out, step)
	}
	return out, nil
}

// copyScripts are the RUN steps that write files.
func copyScripts(files []driver.CopyFile) []string {
	var runs []string
	var cur []string
	size := 0
	flush := func() {
		if len(cur) > 0 {
			runs = append(runs, "RUN "+strings.Join(cur, " && "))
			cur, size = nil, 0
		}
	}
	add := func(cmd string) {
		if size+len(cmd)+4 > maxScript {
			flush()
		}
		cur = append(cur, cmd)
		size += len(cmd) + 4
	}
	var dirModes []string // last: a read-only directory is still written into first
	for _, f := range files {
		p := shellQuote(relPath(f.Path))
		mode := strconv.FormatUint(uint64(f.Mode.Perm()), 8)
		if f.Mode.IsDir() {
			add("mkdir -p " + p)
			dirModes = append(dirModes, "chmod "+mode+" "+p)
			continue
		}
		add("mkdir -p " + shellQuote(relPath(path.Dir(f.Path))) + " && : > " + p)
		enc := base64.StdEncoding.EncodeToString(f.Data)
		const chunk = maxScript - 512 // a multiple of 4 keeps chunks decodable alone
		for len(enc) > 0 {
			n := min(len(enc), chunk-chunk%4)
			add("printf %s " + shellQuote(enc[:n]) + " | base64 -d >> " + p)
			enc = enc[n:]
		}
		add("chmod " + mode + " " + p)
	}
	for i := len(dirModes) - 1; i >= 0; i-- { // children first
		add(dirModes[i])
	}
	flush()
	return runs
}

// relPath turns a path under workdirMark into one relative to the
// working directory.
func relPath(p string) string {
	if p == workdirMark {
		return "."
	}
	if r, ok := strings.CutPrefix(p, workdirMark+"/"); ok {
		return "./" + r
	}
	return p
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
