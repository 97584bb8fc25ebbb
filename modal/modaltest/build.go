package modaltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal/modaltest/internal/guest"
)

// Image builds. A registry image (FROM tag) builds at once: its tag is
// recorded, and its sandboxes see the image's files when the image store
// has them (Options.ImageFiles, images.go), else this machine's programs. Layers with
// Dockerfile commands (Image.DockerfileCommands) are built for real, in a
// sandbox of their own: RUN runs there (with this machine's programs, and
// no network unless Options.HostNetwork), ENV and WORKDIR set the image's
// environment and working directory, and the files the commands leave are
// captured like a snapshot and restored into every sandbox made from the
// image. COPY and ADD (files from a build context) fail the build; other
// instructions (CMD, LABEL, EXPOSE, USER, ...) are recorded and ignored.

// buildTimeout bounds one image build.
const buildTimeout = 10 * time.Minute

// shimsDir holds python and pip links to python3 and pip3 where a host has
// only those: Modal's Python images have both names.
const shimsDir = "/__modal/.shims"

// prepareScript gives a sandbox the directories a container image has
// (/root, /opt, /var/tmp, ...) and the shims.
const prepareScript = `mkdir -p /root /home /opt /mnt /srv /run /var/tmp /var/log /var/lib 2>/dev/null && chmod 1777 /var/tmp
mkdir -p ` + shimsDir + ` 2>/dev/null || exit 0
for pair in python:python3 pip:pip3; do
  n=${pair%%:*}; t=${pair#*:}
  if ! command -v "$n" >/dev/null 2>&1 && p=$(command -v "$t"); then ln -sf "$p" "` + shimsDir + `/$n"; fi
done
exit 0`

// defaultPath is the local provider's PATH with the shims last.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:" + shimsDir

// sandboxEnv is the environment a provider sandbox starts with.
func sandboxEnv(env map[string]string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	if _, ok := out["PATH"]; !ok {
		out["PATH"] = defaultPath
	}
	return out
}

// prepare makes a new provider sandbox look like a Modal one.
func prepare(ctx context.Context, cs *compute.Sandbox) {
	if h, err := cs.Start(ctx, []string{"/bin/sh", "-c", prepareScript}, &compute.RunOptions{MaxOutput: -1}); err == nil {
		h.Wait()
	}
}

// buildLayer runs a layer's commands on top of parent and returns the
// image's files, environment and working directory, or the build's
// failure.
func (s *Server) buildLayer(ctx context.Context, img *image, cmds []string, secretEnv map[string]string) *pb.GenericResult {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	needsSandbox := false
	for _, c := range cmds {
		op, _, _ := strings.Cut(strings.TrimSpace(c), " ")
		switch strings.ToUpper(op) {
		case "RUN":
			needsSandbox = true
		case "COPY", "ADD":
			return failure(fmt.Sprintf("%s is not supported by the Modal emulator: it has no build context (%s)", strings.ToUpper(op), c))
		}
	}
	var cs *compute.Sandbox
	var installed string
	if needsSandbox {
		network := compute.NetworkNone
		if s.opts.HostNetwork {
			network = compute.NetworkHost
		}
		var err error
		cs, err = s.compute.Create(ctx, &compute.CreateOptions{Timeout: buildTimeout + sandboxMargin, Env: sandboxEnv(img.env), Network: network, Name: "image-build"})
		if err != nil {
			return failure(fmt.Sprintf("starting the build sandbox: %v", err))
		}
		defer cs.Destroy(context.WithoutCancel(ctx))
		prepare(ctx, cs)
		if installed, err = installGuestIn(ctx, cs, s.guest.path); err != nil {
			return failure(fmt.Sprintf("preparing the build sandbox: %v", err))
		}
		if len(img.files) > 0 {
			var errb bytes.Buffer
			if code, err := runIn(ctx, cs, installed, guest.ModeRestore, []string{"/"}, bytes.NewReader(img.files), nil, &errb); err != nil || code != 0 {
				return failure(fmt.Sprintf("restoring the base image's files: %v %s", err, errb.String()))
			}
		}
	}
	workdir := img.workdir
	for _, c := range cmds {
		c = strings.TrimSpace(c)
		op, rest, _ := strings.Cut(c, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(op) {
		case "RUN":
			argv := []string{"/bin/sh", "-c", rest}
			if strings.HasPrefix(rest, "[") {
				var exec []string
				if err := json.Unmarshal([]byte(rest), &exec); err != nil || len(exec) == 0 {
					return failure(fmt.Sprintf("malformed exec form: %s", c))
				}
				argv = exec
			}
			var out bytes.Buffer
			env := map[string]string{}
			maps.Copy(env, img.env)
			maps.Copy(env, secretEnv)
			h, err := cs.Start(ctx, argv, &compute.RunOptions{Env: env, Dir: workdir, Stdout: &out, Stderr: &out, MaxOutput: -1})
			if err != nil {
				return failure(fmt.Sprintf("%s: %v", c, err))
			}
			res, err := h.Wait()
			if err != nil || res.ExitCode != 0 {
				return failure(fmt.Sprintf("%s: exit code %d\n%s", c, res.ExitCode, tail(out.String(), 8<<10)))
			}
		case "ENV":
			if img.env == nil {
				img.env = map[string]string{}
			}
			if err := parseEnvInstruction(rest, img.env); err != nil {
				return failure(fmt.Sprintf("%s: %v", c, err))
			}
		case "WORKDIR":
			if !path.IsAbs(rest) {
				rest = path.Join(orRoot(workdir), rest)
			}
			workdir = rest
			if cs != nil {
				if h, err := cs.Start(ctx, []string{"mkdir", "-p", workdir}, &compute.RunOptions{MaxOutput: -1}); err == nil {
					h.Wait()
				}
			}
		}
	}
	img.workdir = workdir
	if cs != nil {
		var out, errb bytes.Buffer
		code, err := runIn(ctx, cs, installed, guest.ModeSnapshot, nil, nil, &out, &errb)
		if err != nil || code != 0 {
			return failure(fmt.Sprintf("capturing the image's files: %v %s", err, errb.String()))
		}
		img.files = out.Bytes()
	}
	return pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}.Build()
}

func orRoot(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

func failure(msg string) *pb.GenericResult {
	return pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_FAILURE, Exception: msg}.Build()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// parseEnvInstruction reads ENV's two forms: "K=V K2=V2" (values may be
// double-quoted) and the legacy "K V".
func parseEnvInstruction(rest string, env map[string]string) error {
	if k, v, ok := strings.Cut(rest, " "); ok && !strings.Contains(k, "=") {
		env[k] = strings.TrimSpace(v)
		return nil
	}
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " \t")
		k, after, ok := strings.Cut(rest, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE")
		}
		var v string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				return fmt.Errorf("unterminated quote")
			}
			v, rest = after[1:1+end], after[2+end:]
		} else {
			v, rest, _ = strings.Cut(after, " ")
		}
		env[k] = v
	}
	return nil
}

// installGuestIn copies the guest into a provider sandbox and returns its
// path there.
func installGuestIn(ctx context.Context, cs *compute.Sandbox, exe string) (string, error) {
	f, err := openFile(exe)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out, errb strings.Builder
	h, err := cs.Start(ctx, []string{"/bin/sh", "-c", installScript}, &compute.RunOptions{Stdin: f, Stdout: &out, Stderr: &errb, MaxOutput: -1})
	if err != nil {
		return "", err
	}
	res, err := h.Wait()
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 || out.Len() == 0 {
		return "", fmt.Errorf("install script exited with %d: %s", res.ExitCode, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
