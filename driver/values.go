package driver

import (
	"io/fs"
	"time"
)

// Runtime is a language runtime for running code.
type Runtime string

// The runtimes package compute knows.
const (
	Python Runtime = "python"
	Node   Runtime = "node"
)

// CreateOptions configures a new sandbox. The zero value is valid and
// means the provider's defaults.
type CreateOptions struct {
	// Provider picks a configured provider by name; empty means the router
	// chooses (see Config).
	Provider string
	// Timeout is the sandbox's whole lifetime; when it passes the sandbox
	// is destroyed. Zero means the provider's default (5 minutes for local).
	Timeout time.Duration
	// Env is the environment every command in the sandbox starts with, on
	// top of the provider's clean base (PATH, HOME, LANG).
	Env map[string]string
	// Dir is the default working directory inside the sandbox.
	Dir string
	// Runtime is the default runtime for RunCode when the call names none.
	Runtime Runtime
	// Metadata is kept with the sandbox and returned by Info.
	Metadata map[string]string
	// Name is a human-readable name, returned by Info.
	Name string
	// Network selects network access; the zero value is the provider's
	// default (no network for local, full access for cloud providers).
	Network Network
	// GPU asks for GPUs: a type and count in Modal's notation ("T4",
	// "A100:2", "any"). Empty means none. A provider that cannot give one
	// fails Create with an error matching ErrUnsupported.
	GPU string
	// NetworkAllow, when not empty, lets the sandbox reach these "host:port"
	// destinations and nothing else; it cannot be combined with
	// NetworkHost. How it is enforced is the provider's: the local provider
	// runs an HTTP/HTTPS proxy in the host process that the sandbox's
	// environment names (HTTP_PROXY, HTTPS_PROXY), so programs that ignore
	// proxy settings reach nothing.
	NetworkAllow []string
	// Image is the sandbox's root filesystem, an OCI image: a registry
	// reference ("python:3.12-slim", "ghcr.io/org/img:tag",
	// "name@sha256:..."), "oci:DIR[:TAG]" (an OCI layout) or
	// "docker-archive:FILE" (docker save). Empty means the provider's
	// default: the host's /usr, read-only, on local; the runtime's image on
	// Modal. A provider that cannot use the image fails Create with an
	// error saying why.
	Image string
	// ImageSteps are Dockerfile lines applied in order on top of Image,
	// which they need: "RUN cmd" (shell form, run with /bin/sh -c),
	// "ENV K=V" (or "ENV K V"), "WORKDIR dir" and "COPY src... dest"
	// (from ImageContext; see ResolveCopy). The image they make is built
	// once and cached: Modal builds them with its Dockerfile commands;
	// the local provider runs each RUN and COPY in a sandbox of its own
	// and stores the files it changed as a layer keyed by the steps so
	// far (and the copied files' content), so a later Create with the
	// same steps runs none, and one that adds a step runs only that.
	// Other instructions (ADD among them) are refused by Validate.
	ImageSteps []string
	// ImageContext holds the files COPY steps copy: their sources are
	// paths in it. os.DirFS(dir) or (*os.Root).FS() for a directory (the
	// latter keeps links from leading out of it), an embed.FS, or an
	// fstest.MapFS. At most MaxImageContextBytes are copied.
	ImageContext fs.FS
}

// Network is a sandbox's network policy.
type Network string

const (
	// NetworkDefault is the provider's default.
	NetworkDefault Network = ""
	// NetworkNone gives the sandbox only its own loopback interface.
	NetworkNone Network = "none"
	// NetworkHost gives the sandbox the host's network, explicitly.
	NetworkHost Network = "host"
)

// Status is a sandbox's state.
type Status string

// The states a sandbox can be in.
const (
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
	StatusError   Status = "error"
)

// Info describes a sandbox.
type Info struct {
	ID        string
	Provider  string
	Name      string
	Status    Status
	Runtime   Runtime
	CreatedAt time.Time
	// Timeout is the sandbox's lifetime from CreatedAt.
	Timeout  time.Duration
	Metadata map[string]string
	// Limits says, one entry each, which limits and confinement the
	// provider enforces on this sandbox and how ("memory 512 MiB (cgroup
	// v1)", "seccomp (...)"). Empty when the provider does not say.
	Limits []string
}

// FileInfo describes a file in a sandbox.
type FileInfo struct {
	// Name is the base name.
	Name string
	// Path is the full path inside the sandbox.
	Path    string
	IsDir   bool
	Size    int64
	Mode    uint32 // permission bits (fs.FileMode & fs.ModePerm)
	ModTime time.Time
}

// Info returns the fs.FileInfo view of fi; its Sys method returns a
// *FileInfo.
func (fi FileInfo) Info() fs.FileInfo { return fileInfo{fi} }

// fileInfo adapts FileInfo to fs.FileInfo.
type fileInfo struct{ fi FileInfo }

func (i fileInfo) Name() string       { return i.fi.Name }
func (i fileInfo) Size() int64        { return i.fi.Size }
func (i fileInfo) ModTime() time.Time { return i.fi.ModTime }
func (i fileInfo) IsDir() bool        { return i.fi.IsDir }
func (i fileInfo) Sys() any           { return &i.fi }
func (i fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.fi.Mode) & fs.ModePerm
	if i.fi.IsDir {
		m |= fs.ModeDir
	}
	return m
}
