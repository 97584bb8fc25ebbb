package modaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"strconv"
	"strings"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/computesdk-go/compute"
	"github.com/computesdk-go/compute/modal/modaltest/internal/guest"
)

// router implements modal.task_command_router.TaskCommandRouter: exec and
// stdio of the running task, its entrypoint's stdio (V2), readiness and
// snapshots. Every call's bearer token must be for the task it names.
type router struct {
	pb.UnimplementedTaskCommandRouterServer
	s *Server
}

// stdioChunk is the most output one stream message carries.
const stdioChunk = 1 << 20

// taskFor authorizes the call and finds its sandbox.
func (r *router) taskFor(ctx context.Context, taskID string) (*sandbox, error) {
	if err := authorizeTask(ctx, taskID); err != nil {
		return nil, err
	}
	sb, err := r.s.task(taskID)
	if err != nil {
		return nil, err
	}
	sb.touch()
	return sb, nil
}

func (r *router) execFor(ctx context.Context, taskID, execID string) (*process, error) {
	sb, err := r.taskFor(ctx, taskID)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	p := sb.execs[execID]
	sb.mu.Unlock()
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "exec %s not found in task %s", execID, taskID)
	}
	return p, nil
}

func (r *router) TaskExecStart(ctx context.Context, req *pb.TaskExecStartRequest) (*pb.TaskExecStartResponse, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() != "" {
		return nil, status.Error(codes.Unimplemented, "sidecar containers are not emulated")
	}
	if len(req.GetCommandArgs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "command_args must not be empty")
	}
	if req.GetExecId() == "" {
		return nil, status.Error(codes.InvalidArgument, "exec_id must not be empty")
	}
	if w := req.GetWorkdir(); req.HasWorkdir() && !strings.HasPrefix(w, "/") {
		return nil, status.Errorf(codes.InvalidArgument, "workdir must be an absolute path, got: %q", w)
	}
	// Starts are idempotent on exec_id: the SDK retries with the same one.
	sb.execStart.Lock()
	defer sb.execStart.Unlock()
	sb.mu.Lock()
	_, exists := sb.execs[req.GetExecId()]
	sb.mu.Unlock()
	if exists {
		return &pb.TaskExecStartResponse{}, nil
	}
	if !sb.running() {
		return nil, status.Errorf(codes.NotFound, "Task %s has finished", sb.taskID)
	}
	env, err := r.s.resolveSecrets(req.GetSecretIds(), nil)
	if err != nil {
		return nil, err
	}
	maps.Copy(env, req.GetEnv())
	srcEnv, err := r.s.resolveSecrets(nil, req.GetSecretSources())
	if err != nil {
		return nil, err
	}
	maps.Copy(env, srcEnv)
	spec := execSpec{
		id: req.GetExecId(), argv: req.GetCommandArgs(), env: env, dir: req.GetWorkdir(),
		stdin: newInput(), pty: req.GetPtyInfo(),
	}
	if req.GetStdoutConfig() == pb.TaskExecStdoutConfig_TASK_EXEC_STDOUT_CONFIG_PIPE {
		spec.stdout = newOutput()
	}
	switch req.GetStderrConfig() {
	case pb.TaskExecStderrConfig_TASK_EXEC_STDERR_CONFIG_PIPE:
		spec.stderr = newOutput()
	case pb.TaskExecStderrConfig_TASK_EXEC_STDERR_CONFIG_STDOUT:
		spec.mergeStderr = true
	}
	if req.HasTimeoutSecs() {
		spec.timeout = time.Duration(req.GetTimeoutSecs()) * time.Second
	}
	p, err := sb.startProcess(spec)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	sb.execs[p.id] = p
	sb.execCount++
	sb.mu.Unlock()
	return &pb.TaskExecStartResponse{}, nil
}

func (r *router) TaskExecStdioRead(req *pb.TaskExecStdioReadRequest, stream grpc.ServerStreamingServer[pb.TaskExecStdioReadResponse]) error {
	ctx := stream.Context()
	p, err := r.execFor(ctx, req.GetTaskId(), req.GetExecId())
	if err != nil {
		return err
	}
	out := p.stdout
	if req.GetFileDescriptor() == pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR {
		out = p.stderr
	}
	return out.stream(ctx, req.GetOffset(), stdioChunk, func(data []byte, _ uint64) error {
		return stream.Send(pb.TaskExecStdioReadResponse_builder{Data: data}.Build())
	})
}

// TaskExecStdinWrite writes at an offset; writes to a process that has
// exited are accepted and dropped, as a pipe buffer would take them.
func (r *router) TaskExecStdinWrite(ctx context.Context, req *pb.TaskExecStdinWriteRequest) (*pb.TaskExecStdinWriteResponse, error) {
	p, err := r.execFor(ctx, req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.stdin.write(ctx, req.GetOffset(), req.GetData(), req.GetEof(), false); err != nil {
		return nil, err
	}
	return &pb.TaskExecStdinWriteResponse{}, nil
}

// TaskExecStdinWriteStream takes a start message, data, and an end message
// that closes stdin. A stream that breaks before the end leaves stdin
// open, for the client to resume at the offset TaskExecStdinStatus gives.
// Data for a process that has exited fails the stream with
// FailedPrecondition, which tells the SDK the tool exited early.
func (r *router) TaskExecStdinWriteStream(stream grpc.ClientStreamingServer[pb.TaskExecStdinWriteStreamRequest, pb.TaskExecStdinWriteStreamResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message of the stream must be start")
	}
	p, err := r.execFor(stream.Context(), start.GetTaskId(), start.GetExecId())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	p.beginStream(cancel)
	off := start.GetOffset()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return status.Error(codes.Aborted, "the stream ended without an end message")
			}
			return err
		}
		if ctx.Err() != nil {
			return status.Error(codes.Aborted, "the stream was replaced (TaskExecStdinStatus was called)")
		}
		switch msg.WhichPayload() {
		case pb.TaskExecStdinWriteStreamRequest_Data_case:
			if err := p.stdin.write(ctx, off, msg.GetData(), false, true); err != nil {
				return err
			}
			off += uint64(len(msg.GetData()))
		case pb.TaskExecStdinWriteStreamRequest_End_case:
			if err := p.stdin.write(ctx, off, nil, true, true); err != nil {
				return err
			}
			return stream.SendAndClose(&pb.TaskExecStdinWriteStreamResponse{})
		default:
			return status.Error(codes.InvalidArgument, "start may only be the first message")
		}
	}
}

func (r *router) TaskExecStdinStatus(ctx context.Context, req *pb.TaskExecStdinStatusRequest) (*pb.TaskExecStdinStatusResponse, error) {
	p, err := r.execFor(ctx, req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	p.evictStream()
	n, closed := p.stdin.state()
	return pb.TaskExecStdinStatusResponse_builder{NumBytesWritten: n, Closed: closed}.Build(), nil
}

func (r *router) TaskExecWait(ctx context.Context, req *pb.TaskExecWaitRequest) (*pb.TaskExecWaitResponse, error) {
	p, err := r.execFor(ctx, req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err := r.s.closing(); err != nil {
		return nil, err
	}
	code := int32(p.code)
	return pb.TaskExecWaitResponse_builder{Code: &code}.Build(), nil
}

func (r *router) TaskExecPoll(ctx context.Context, req *pb.TaskExecPollRequest) (*pb.TaskExecPollResponse, error) {
	p, err := r.execFor(ctx, req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if !p.exited() {
		return &pb.TaskExecPollResponse{}, nil
	}
	if err := r.s.closing(); err != nil {
		return nil, err
	}
	code := int32(p.code)
	return pb.TaskExecPollResponse_builder{Code: &code}.Build(), nil
}

// SandboxStdioReadV2 streams a V2 sandbox's entrypoint output from an
// offset; every message says where its data starts.
func (r *router) SandboxStdioReadV2(req *pb.SandboxStdioReadV2Request, stream grpc.ServerStreamingServer[pb.SandboxStdioReadV2Response]) error {
	ctx := stream.Context()
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return err
	}
	out := sb.stdout
	if req.GetFileDescriptor() == pb.SandboxStdioFileDescriptor_SANDBOX_STDIO_FILE_DESCRIPTOR_STDERR {
		out = sb.stderr
	}
	return out.stream(ctx, req.GetOffset(), stdioChunk, func(data []byte, off uint64) error {
		return stream.Send(pb.SandboxStdioReadV2Response_builder{Data: data, StartingOffset: off}.Build())
	})
}

func (r *router) SandboxStdinWriteV2(ctx context.Context, req *pb.SandboxStdinWriteV2Request) (*pb.SandboxStdinWriteV2Response, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if err := sb.stdin.write(ctx, req.GetOffset(), req.GetData(), req.GetEof(), false); err != nil {
		return nil, err
	}
	return &pb.SandboxStdinWriteV2Response{}, nil
}

// probeInterval is the default pause between readiness probes.
const probeInterval = 100 * time.Millisecond

// SandboxWaitUntilReady runs the sandbox's readiness probe until it
// passes, for at most the request's timeout. Without a probe the sandbox
// is ready when it runs.
func (r *router) SandboxWaitUntilReady(ctx context.Context, req *pb.SandboxWaitUntilReadyTcrRequest) (*pb.SandboxWaitUntilReadyTcrResponse, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if t := time.Duration(float64(req.GetTimeout()) * float64(time.Second)); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	sb.mu.Lock()
	ready := sb.readyAt
	sb.mu.Unlock()
	probe := sb.def.GetReadinessProbe()
	if ready == 0 && (probe == nil || (!probe.HasTcpPort() && len(probe.GetExecCommand().GetArgv()) == 0)) {
		ready = sb.createdAt
	}
	interval := probeInterval
	if probe.HasIntervalMs() && probe.GetIntervalMs() > 0 {
		interval = time.Duration(probe.GetIntervalMs()) * time.Millisecond
	}
	for ready == 0 {
		if !sb.running() {
			return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s finished before it was ready", sb.id)
		}
		ok, err := sb.probe(ctx, probe)
		if err != nil && ctx.Err() == nil {
			return nil, err
		}
		if ok {
			ready = float64(time.Now().UnixMicro()) / 1e6
			sb.mu.Lock()
			sb.readyAt = ready
			sb.mu.Unlock()
			break
		}
		if err := sleep(ctx, interval); err != nil {
			return nil, err
		}
	}
	return pb.SandboxWaitUntilReadyTcrResponse_builder{ReadyAt: ready}.Build(), nil
}

// probe runs the readiness probe once.
func (sb *sandbox) probe(ctx context.Context, probe *pb.Probe) (bool, error) {
	if probe.HasTcpPort() {
		code, err := sb.runGuest(ctx, guest.ModeProbe, []string{strconv.Itoa(int(probe.GetTcpPort()))}, nil, nil, nil)
		return err == nil && code == 0, nil
	}
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	h, err := cs.Start(ctx, probe.GetExecCommand().GetArgv(), &compute.RunOptions{MaxOutput: -1})
	if errors.Is(err, compute.ErrCommandNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	res, err := h.Wait()
	return err == nil && res.ExitCode == 0, nil
}

// TaskSnapshotFilesystem archives the sandbox's files into a new image;
// sandboxes created from it start with them. Idempotent on snapshot_id.
func (r *router) TaskSnapshotFilesystem(ctx context.Context, req *pb.TaskSnapshotFilesystemRequest) (*pb.TaskSnapshotFilesystemResponse, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() != "" {
		return nil, status.Error(codes.Unimplemented, "sidecar containers are not emulated")
	}
	id, err := sb.snapshot(ctx, req.GetSnapshotId(), nil)
	if err != nil {
		return nil, err
	}
	return pb.TaskSnapshotFilesystemResponse_builder{ImageId: id}.Build(), nil
}

// TaskSnapshotDirectory archives one directory into a new image, for
// TaskMountDirectory.
func (r *router) TaskSnapshotDirectory(ctx context.Context, req *pb.TaskSnapshotDirectoryRequest) (*pb.TaskSnapshotDirectoryResponse, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() != "" {
		return nil, status.Error(codes.Unimplemented, "sidecar containers are not emulated")
	}
	dir := string(req.GetPath())
	if !path.IsAbs(dir) {
		return nil, status.Errorf(codes.InvalidArgument, "path must be absolute, got %q", dir)
	}
	id, err := sb.snapshot(ctx, req.GetSnapshotId(), []string{dir})
	if err != nil {
		return nil, err
	}
	return pb.TaskSnapshotDirectoryResponse_builder{ImageId: id}.Build(), nil
}

// snapshot archives the sandbox (or the directories in args) into a new
// image, once per snapshot id.
func (sb *sandbox) snapshot(ctx context.Context, snapshotID string, args []string) (string, error) {
	sb.snapMu.Lock()
	defer sb.snapMu.Unlock()
	if snapshotID != "" {
		sb.mu.Lock()
		id := sb.snapshots[snapshotID]
		sb.mu.Unlock()
		if id != "" {
			return id, nil
		}
	}
	if !sb.running() {
		return "", status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	var out, errb bytes.Buffer
	code, err := sb.runGuest(ctx, guest.ModeSnapshot, args, nil, &out, &errb)
	if err != nil {
		return "", status.Errorf(codes.Internal, "snapshot of %s: %v", sb.id, err)
	}
	if code != 0 {
		return "", status.Errorf(codes.Internal, "snapshot of %s failed: %s", sb.id, strings.TrimSpace(errb.String()))
	}
	files := out.Bytes()
	if sb.img.rootImage != "" && len(args) == 0 {
		files = sb.s.stripImageFiles(sb.img.rootImage, files)
	}
	img := sb.s.newSnapshotImage(sb.img, files, len(args) > 0)
	if snapshotID != "" {
		sb.mu.Lock()
		sb.snapshots[snapshotID] = img.id
		sb.mu.Unlock()
	}
	return img.id, nil
}

// TaskSetNetworkAccess records a new outbound policy. The sandbox's
// network cannot change while it runs on the local provider: it keeps what
// it was created with (see SandboxRecord.Network), and a warning says so.
func (r *router) TaskSetNetworkAccess(ctx context.Context, req *pb.TaskSetNetworkAccessRequest) (*pb.TaskSetNetworkAccessResponse, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if err := validateNetworkAccess(req.GetNetworkAccess()); err != nil {
		return nil, err
	}
	sb.mu.Lock()
	sb.network = req.GetNetworkAccess()
	sb.mu.Unlock()
	warn(ctx, "Modal emulator: the new network policy is recorded, but the sandbox keeps the network it was created with")
	return &pb.TaskSetNetworkAccessResponse{}, nil
}

// mountBackups is where TaskMountDirectory moves the directories it hides.
const mountBackups = "/__modal/.mounts"

// TaskMountDirectory fills a directory with an image's files (an empty
// directory for no image), hiding what was there until
// TaskUnmountDirectory brings it back. The emulator copies where Modal
// mounts: the files are ordinary files of the sandbox.
func (r *router) TaskMountDirectory(ctx context.Context, req *pb.TaskMountDirectoryRequest) (*emptypb.Empty, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	dir := path.Clean(string(req.GetPath()))
	if !path.IsAbs(dir) || dir == "/" {
		return nil, status.Errorf(codes.InvalidArgument, "path must be an absolute path other than /, got %q", req.GetPath())
	}
	var files []byte
	if id := req.GetImageId(); id != "" {
		img, err := r.s.imageByID(id)
		if err != nil {
			return nil, err
		}
		files = img.files
	}
	sb.mountMu.Lock()
	defer sb.mountMu.Unlock()
	backup, mounted := sb.mounts[dir]
	if mounted {
		if _, err := sb.shell(ctx, `rm -rf -- "$1"`, dir); err != nil {
			return nil, err
		}
	} else {
		backup = fmt.Sprintf("%s/%d", mountBackups, len(sb.mounts)+1)
		code, err := sb.shell(ctx, `if [ -e "$1" ] || [ -L "$1" ]; then mkdir -p "$(dirname "$2")" && mv -- "$1" "$2"; else exit 3; fi`, dir, backup)
		if err != nil && code != 3 {
			return nil, err
		}
		if code == 3 {
			backup = ""
		}
	}
	if err := sb.restore(dir, files); err != nil {
		return nil, status.Errorf(codes.Internal, "mounting the image at %s: %v", dir, err)
	}
	sb.mounts[dir] = backup
	return &emptypb.Empty{}, nil
}

// TaskUnmountDirectory removes what TaskMountDirectory put at a directory
// and brings back what was there.
func (r *router) TaskUnmountDirectory(ctx context.Context, req *pb.TaskUnmountDirectoryRequest) (*emptypb.Empty, error) {
	sb, err := r.taskFor(ctx, req.GetTaskId())
	if err != nil {
		return nil, err
	}
	dir := path.Clean(string(req.GetPath()))
	sb.mountMu.Lock()
	defer sb.mountMu.Unlock()
	backup, ok := sb.mounts[dir]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "no image is mounted at %s", dir)
	}
	if _, err := sb.shell(ctx, `rm -rf -- "$1" && { [ -z "$2" ] || mv -- "$2" "$1"; }`, dir, backup); err != nil {
		return nil, err
	}
	delete(sb.mounts, dir)
	return &emptypb.Empty{}, nil
}

// shell runs a script with /bin/sh in the sandbox, with args as $1...,
// and fails unless it exits 0; the exit code is returned either way.
func (sb *sandbox) shell(ctx context.Context, script string, args ...string) (int, error) {
	sb.mu.Lock()
	cs := sb.cs
	sb.mu.Unlock()
	if cs == nil || !sb.running() {
		return -1, status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	var errb bytes.Buffer
	h, err := cs.Start(ctx, append([]string{"/bin/sh", "-c", script, "sh"}, args...), &compute.RunOptions{Stderr: &errb, MaxOutput: -1})
	if err != nil {
		return -1, status.Errorf(codes.Internal, "%v", err)
	}
	res, err := h.Wait()
	if err != nil {
		return -1, status.Errorf(codes.Internal, "%v", err)
	}
	if res.ExitCode != 0 {
		return res.ExitCode, status.Errorf(codes.Internal, "exit code %d: %s", res.ExitCode, strings.TrimSpace(errb.String()))
	}
	return 0, nil
}
