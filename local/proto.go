package local

// The protocol between the host and a sandbox's agent.
//
// The host and the agent share a SOCK_SEQPACKET control socket. For every
// operation the host makes a fresh socket pair and sends one end to the
// agent in a control message, together with the file descriptors the
// operation needs (the pipes of a command's stdio, the pipe a file is
// streamed through). Requests and replies then travel on that per-operation
// connection as length-prefixed JSON, so operations never wait on each
// other and nothing needs multiplexing. File contents and command output
// never pass through the agent's memory: they flow through the pipes.
//
// The host treats everything the agent says as untrusted input: sandboxed
// code could take the agent over.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxMessage bounds one protocol message (a request holds argv and env).
const maxMessage = 8 << 20

// agentConfig is the first message on the control socket.
type agentConfig struct {
	Isolate  bool              `json:"isolate"`
	Confine  bool              `json:"confine"`            // seccomp, Landlock, no capabilities
	Staging  string            `json:"staging,omitempty"`  // empty host dir to build the root on
	WorkDir  string            `json:"workDir"`            // the work dir inside the sandbox
	Dir      string            `json:"dir"`                // default working directory
	Env      map[string]string `json:"env"`                // base environment of every command
	Network  bool              `json:"network"`            // keep the host network
	DiskSize int64             `json:"diskSize"`           // bytes, for everything written
	Limits   limits            `json:"limits"`             // rlimits for sandboxed processes
	Hostname string            `json:"hostname,omitempty"` // UTS name
	GPUs     []string          `json:"gpus,omitempty"`     // host device nodes to bind in
	// Separate: the agent runs as uid 1 of the sandbox's user namespace
	// (a host uid of its own), sandboxed code as uid 0, so that code cannot
	// reach the agent's process attributes (oom_score_adj, rlimits).
	Separate bool `json:"separate,omitempty"`
}

type limits struct {
	Procs    uint64 `json:"procs"`
	Files    uint64 `json:"files"`
	FileSize uint64 `json:"fileSize"`
	Memory   uint64 `json:"memory"` // address space; 0 = unlimited
}

// Operations.
const (
	opInit    = "init" // bind a Create's environment and working directory
	opPing    = "ping" // is the agent answering?
	opExec    = "exec"
	opOpen    = "open"
	opWrite   = "write"
	opMkdir   = "mkdir"
	opReadDir = "readdir"
	opStat    = "stat"
	opRemove  = "remove"
)

// request is the first message on an operation's connection.
type request struct {
	Op    string            `json:"op"`
	Argv  []string          `json:"argv,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Dir   string            `json:"dir,omitempty"`
	Path  string            `json:"path,omitempty"`
	Stdin bool              `json:"stdin,omitempty"` // an stdin pipe was sent
	Proxy bool              `json:"proxy,omitempty"` // init: serve the allowlist proxy
	Group bool              `json:"group,omitempty"` // exec: the command's cgroup files were sent (cmdgroup_linux.go)
}

// reply is what the agent answers. Err and Errno describe a failure;
// Errno is a Linux errno so the host can rebuild fs.ErrNotExist and the
// like.
type reply struct {
	Err      string     `json:"err,omitempty"`
	Errno    int        `json:"errno,omitempty"`
	NotFound bool       `json:"notFound,omitempty"` // exec: no such command
	Exit     *int       `json:"exit,omitempty"`
	Files    []fileStat `json:"files,omitempty"`
	Done     bool       `json:"done,omitempty"`
	Enforced []string   `json:"enforced,omitempty"` // setup: confinement in force
}

// control is a message from host to agent during an operation.
type control struct {
	Kill   bool `json:"kill,omitempty"`   // exec: kill the process tree
	Commit bool `json:"commit,omitempty"` // write: all data sent, install the file
}

type fileStat struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Dir     bool   `json:"dir"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"`
	ModTime int64  `json:"mtime"` // nanoseconds since the epoch
}

func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxMessage {
		return fmt.Errorf("%w: %d bytes, over the %d byte limit", errTooBig, len(b), maxMessage)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

var errTooBig = errors.New("protocol message too large")

func readMsg(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMessage {
		return errTooBig
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
