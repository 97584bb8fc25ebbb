// Package agentproto holds the messages between the local provider's host
// side (package local) and a sandbox's agent (package agent), which runs
// inside the sandbox: the whole protocol between the two sides.
//
// The agent is the host program re-executed with argv[0] set to [Arg0],
// [Env] as its whole environment and the control socket as descriptor
// [ControlFD]. The host and the agent share that SOCK_SEQPACKET control
// socket. The first message on it is the host's [Config], and the agent
// answers with a [Reply] (Done and Enforced, or Err) once it is set up, each
// a JSON datagram of its own. Then, for every operation the host makes a
// fresh socket pair and sends one end to the agent in a control message
// ([MsgOperation]), together with the file descriptors the operation needs
// (the pipes of a command's stdio, the pipe a file is streamed through).
// Requests and replies then travel on that per-operation connection as
// length-prefixed JSON ([WriteMsg], [ReadMsg]), so operations never wait on
// each other and nothing needs multiplexing. File contents and command
// output never pass through the agent's memory: they flow through the pipes.
// The agent sends the connections it accepts on [ProxyAddr] back on the
// control socket ([MsgProxied]).
//
// A terminal ([OpTerminal]) is a command on a pseudo-terminal that the
// agent opens in the sandbox (its own devpts instance). The agent's reply
// that the command started carries the terminal's master side as a
// descriptor on the operation's connection ([WriteMsgRights]), so that
// the host reads, writes and resizes the terminal directly: keystrokes
// and output never pass through the agent either.
//
// The host treats everything the agent says as untrusted input: sandboxed
// code could take the agent over.
package agentproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// How the host starts the agent: it re-executes its own program with
// argv[0] set to Arg0, Env as its whole environment, and the agent's end
// of the control socket as descriptor ControlFD. Anything else is not an
// agent.
const (
	Arg0      = "compute-sandbox-agent"
	Env       = "COMPUTE_SANDBOX_AGENT=1"
	ControlFD = 3
)

// The one byte of data that goes with the descriptors on the control
// socket says what they are.
const (
	// MsgOperation: host to agent, an operation's connection (first) and
	// the descriptors the operation needs.
	MsgOperation byte = 1
	// MsgProxied: agent to host, a connection accepted on ProxyAddr.
	MsgProxied byte = 2
)

// ProxyAddr is where, inside a sandbox created with a network allowlist,
// the agent listens for the allowlist proxy's connections; the host
// serves them.
const ProxyAddr = "127.0.0.1:3128"

// ProxyPort is ProxyAddr's port.
const ProxyPort = 3128

// MaxImageLayers bounds the layers of an image root (overlayfs takes at
// most 500 lower layers, one message at most 253 descriptors).
const MaxImageLayers = 128

// MaxMessage bounds one protocol message (a Request holds argv and env).
const MaxMessage = 8 << 20

// Config is the first message on the control socket: how the agent sets
// the sandbox up.
type Config struct {
	Isolate  bool              `json:"isolate"`
	Confine  bool              `json:"confine"`            // seccomp, Landlock, no capabilities
	Staging  string            `json:"staging,omitempty"`  // empty host dir to build the root on
	WorkDir  string            `json:"workDir"`            // the work dir inside the sandbox
	Dir      string            `json:"dir"`                // default working directory
	Env      map[string]string `json:"env"`                // base environment of every command
	Network  bool              `json:"network"`            // keep the host network
	DiskSize int64             `json:"diskSize"`           // bytes, for everything written
	Limits   Limits            `json:"limits"`             // rlimits for sandboxed processes
	Hostname string            `json:"hostname,omitempty"` // UTS name
	GPUs     []string          `json:"gpus,omitempty"`     // host device nodes to bind in
	// Etc lists the host's /etc entries the root mirrors (paths, from
	// agent.EtcEntries), resolved once by the host rather than by every
	// agent; empty, the agent resolves them itself.
	Etc []string `json:"etc,omitempty"`
	// Seccomp, with Isolate and Confine, is what the agent installs on
	// the thread that forks sandboxed processes: filters the host
	// assembled (package seccompfilter). Nil where the kernel has none.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
	// Separate: the agent runs as uid 1 of the sandbox's user namespace
	// (a host uid of its own), sandboxed code as uid 0, so that code cannot
	// reach the agent's process attributes (oom_score_adj, rlimits).
	Separate bool `json:"separate,omitempty"`
	// User, when set (with Separate only), is who sandboxed code runs as:
	// an image's USER other than root, which the sandbox's user namespace
	// maps besides its root and the agent. Unset: its root, uid 0.
	User *User `json:"user,omitempty"`
	// Image, when set, makes the root an OCI image's instead of the
	// host's system: see ImageRoot.
	Image *ImageRoot `json:"image,omitempty"`
	// Init, in a sandbox started for a particular Create rather than
	// ahead of demand, is that Create's OpInit request: the agent does it
	// once set up, before its Reply, and answers its error in InitErr,
	// which saves the host a round trip.
	Init *Request `json:"init,omitempty"`
}

// Seccomp is a set of seccomp filters, for the agent to install in order.
type Seccomp struct {
	// Programs are classic BPF programs, each encoded by EncodeFilter.
	Programs [][]byte `json:"programs"`
	// Summary says what they refuse, for the Reply's Enforced.
	Summary string `json:"summary"`
}

// MaxConfig bounds the JSON of a Config (one datagram; the agent reads
// it into a buffer of this size).
const MaxConfig = 1 << 16

// ImageRoot describes an image root. The image's layers come as
// descriptors with the Config message (SCM_RIGHTS), top layer first: the
// read-only lower layers of an overlay whose writable layer lives in the
// sandbox's own disk (the tmpfs of DiskSize bytes). With Mounts they are
// detached mounts (open_tree), idmapped by the host to the sandbox's user
// namespace, for the agent to attach; otherwise Dirs names directories
// the agent binds as they are (their owner is already the sandbox's root).
//
// With Later, the sandbox is started ahead of demand, before anyone names
// an image: the agent prepares what needs no image, then waits for a
// second Config, whose Image and Env it takes, with the layers.
type ImageRoot struct {
	Layers int  `json:"layers"`
	Mounts bool `json:"mounts,omitempty"`
	Later  bool `json:"later,omitempty"`
	// Dirs, without Mounts, are the layers' directories (top first) for
	// the agent to bind, instead of descriptors: where the agent runs as
	// the caller's uid, it can reach them, and a bind may not take a
	// descriptor's mount from the host's mount namespace.
	Dirs []string `json:"dirs,omitempty"`
	// Capture (an image build step's sandbox): the agent sends the host
	// an O_PATH descriptor of the overlay's writable layer with its
	// ready reply (SCM_RIGHTS), so that the host can store what the step
	// wrote once the sandbox is gone.
	Capture bool `json:"capture,omitempty"`
}

// Limits are the rlimits of sandboxed processes; 0 leaves one as it is.
type Limits struct {
	Procs    uint64 `json:"procs"`
	Files    uint64 `json:"files"`
	FileSize uint64 `json:"fileSize"`
	Memory   uint64 `json:"memory"` // address space; 0 = unlimited
}

// Operations (Request.Op).
const (
	OpInit    = "init" // bind a Create's environment and working directory
	OpPing    = "ping" // is the agent answering?
	OpExec    = "exec"
	OpOpen    = "open"
	OpWrite   = "write"
	OpMkdir   = "mkdir"
	OpReadDir = "readdir"
	OpStat    = "stat"
	OpRemove  = "remove"
	// OpTerminal starts a command on a new pseudo-terminal. The reply that
	// it started carries the terminal's master side. Unlike an exec, the
	// operation outlives the command: after the exit reply the agent keeps
	// what the command left on the terminal until the host sends a kill or
	// hangs up, then kills it all and answers Done.
	OpTerminal = "terminal"
)

// Request is the first message on an operation's connection.
type Request struct {
	Op    string            `json:"op"`
	Argv  []string          `json:"argv,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Dir   string            `json:"dir,omitempty"`
	Path  string            `json:"path,omitempty"`
	Stdin bool              `json:"stdin,omitempty"` // an stdin pipe was sent
	Proxy bool              `json:"proxy,omitempty"` // init: serve the allowlist proxy
	// Group (exec): the command's cgroup files were sent, last: the one
	// to enter, the one that lists its tasks, the one to leave by.
	Group bool `json:"group,omitempty"`
	// Rows and Cols (terminal): the terminal's initial size.
	Rows int `json:"rows,omitempty"`
	Cols int `json:"cols,omitempty"`
}

// Reply is what the agent answers. Err and Errno describe a failure;
// Errno is a Linux errno so the host can rebuild fs.ErrNotExist and the
// like.
type Reply struct {
	Err      string `json:"err,omitempty"`
	Errno    int    `json:"errno,omitempty"`
	NotFound bool   `json:"notFound,omitempty"` // exec: no such command
	// Unsupported (terminal): the sandbox cannot do it at all.
	Unsupported bool       `json:"unsupported,omitempty"`
	Exit        *int       `json:"exit,omitempty"`
	Files       []FileStat `json:"files,omitempty"`
	Done        bool       `json:"done,omitempty"`
	Enforced    []string   `json:"enforced,omitempty"` // setup: confinement in force
	// InitErr (setup, with Config.Init): the sandbox is set up, but the
	// Create's settings failed (a working directory that cannot be made).
	InitErr string `json:"initErr,omitempty"`
}

// Control is a message from host to agent during an operation.
type Control struct {
	Kill   bool `json:"kill,omitempty"`   // exec, terminal: kill the process tree
	Commit bool `json:"commit,omitempty"` // write: all data sent, install the file
}

// FileStat describes one file, for stat and readdir (and, its Size only,
// for open).
type FileStat struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Dir     bool   `json:"dir"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	ModTime int64  `json:"mtime"` // nanoseconds since the epoch
}

// WriteMsg writes v as one length-prefixed JSON message. A message over
// MaxMessage is not written: the error wraps ErrTooBig.
func WriteMsg(w io.Writer, v any) error {
	buf, err := encodeMsg(v)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// encodeMsg encodes v as WriteMsg sends it.
func encodeMsg(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, over the %d byte limit", ErrTooBig, len(b), MaxMessage)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	return buf, nil
}

// ErrTooBig is returned for a message over MaxMessage.
var ErrTooBig = errors.New("protocol message too large")

// ReadMsg reads one length-prefixed JSON message into v, refusing one
// over MaxMessage.
func ReadMsg(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return ErrTooBig
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// User is the uid and gid (of the sandbox's user namespace) that
// sandboxed code runs as, and the only group it is in: no capabilities,
// no way back to root.
type User struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Owned are the image's files that belong to the user or its group
	// (the image's layers hold every file as the sandbox's root's), which
	// the agent gives them before any sandboxed code runs.
	Owned []Owned `json:"owned,omitempty"`
}

// Owned is a path of an image root (relative to it) and the uid and gid
// it belongs to, of the sandbox's user namespace.
type Owned struct {
	Path string `json:"p"`
	UID  int    `json:"u"`
	GID  int    `json:"g"`
}
