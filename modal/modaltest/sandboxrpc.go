package modaltest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The control plane's sandbox RPCs. V1 and V2 share one implementation:
// the families differ in id shape and in what the create response holds,
// and each sees the other's sandboxes.

func (c *controlPlane) SandboxCreate(ctx context.Context, req *pb.SandboxCreateRequest) (*pb.SandboxCreateResponse, error) {
	sb, err := c.s.createSandbox(ctx, req.GetAppId(), req.GetDefinition(), req.GetTags(), nil, false)
	if err != nil {
		return nil, err
	}
	return pb.SandboxCreateResponse_builder{SandboxId: sb.id, Metadata: sb.metadata()}.Build(), nil
}

func (c *controlPlane) SandboxCreateV2(ctx context.Context, req *pb.SandboxCreateV2Request) (*pb.SandboxCreateV2Response, error) {
	var sources []*pb.SecretSource
	if eph := req.GetEphemeralSecrets(); len(eph.GetContents()) > 0 {
		sources = append(sources, pb.SecretSource_builder{Env: eph}.Build())
	}
	sources = append(sources, req.GetSecretSources()...)
	sb, err := c.s.createSandbox(ctx, req.GetAppId(), req.GetDefinition(), req.GetTags(), sources, true)
	if err != nil {
		return nil, err
	}
	var tunnels []*pb.TunnelData
	for _, t := range sb.tunnelList() {
		if !t.spec.GetUnencrypted() {
			tunnels = append(tunnels, t.data())
		}
	}
	return pb.SandboxCreateV2Response_builder{
		SandboxId:           sb.id,
		TaskId:              sb.taskID,
		Metadata:            sb.metadata(),
		CommandRouterAccess: pb.CommandRouterAccess_builder{Jwt: c.s.routerJWT(sb), Url: c.s.routerURL}.Build(),
		Tunnels:             tunnels,
	}.Build(), nil
}

func (sb *sandbox) metadata() *pb.SandboxHandleMetadata {
	return pb.SandboxHandleMetadata_builder{AppId: sb.app.id, Result: sb.resultNow()}.Build()
}

func (s *Server) routerJWT(sb *sandbox) string {
	return s.mintJWT(claims{TaskID: sb.taskID, Kind: "router"}, s.opts.RouterTokenTTL)
}

func (c *controlPlane) SandboxGetTaskId(ctx context.Context, req *pb.SandboxGetTaskIdRequest) (*pb.SandboxGetTaskIdResponse, error) {
	return c.getTaskID(req)
}

func (c *controlPlane) SandboxGetTaskIdV2(ctx context.Context, req *pb.SandboxGetTaskIdRequest) (*pb.SandboxGetTaskIdResponse, error) {
	return c.getTaskID(req)
}

// getTaskID answers with the task id, and with the result too once the
// sandbox has finished: its output stays readable through the router.
func (c *controlPlane) getTaskID(req *pb.SandboxGetTaskIdRequest) (*pb.SandboxGetTaskIdResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return pb.SandboxGetTaskIdResponse_builder{TaskId: &sb.taskID, TaskResult: sb.resultNow()}.Build(), nil
}

func (c *controlPlane) TaskGetCommandRouterAccess(ctx context.Context, req *pb.TaskGetCommandRouterAccessRequest) (*pb.TaskGetCommandRouterAccessResponse, error) {
	sb, err := c.s.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	return pb.TaskGetCommandRouterAccessResponse_builder{Jwt: c.s.routerJWT(sb), Url: c.s.routerURL}.Build(), nil
}

func (c *controlPlane) SandboxGetCommandRouterAccess(ctx context.Context, req *pb.SandboxGetCommandRouterAccessRequest) (*pb.SandboxGetCommandRouterAccessResponse, error) {
	var sb *sandbox
	var err error
	if req.HasTaskId() {
		sb, err = c.s.task(req.GetTaskId())
	} else {
		sb, err = c.s.sandbox(req.GetSandboxId())
	}
	if err != nil {
		return nil, err
	}
	return pb.SandboxGetCommandRouterAccessResponse_builder{
		Jwt: c.s.routerJWT(sb), Url: c.s.routerURL, WorkerIpv4Address: "127.0.0.1",
	}.Build(), nil
}

func (c *controlPlane) SandboxWait(ctx context.Context, req *pb.SandboxWaitRequest) (*pb.SandboxWaitResponse, error) {
	return c.wait(ctx, req)
}

func (c *controlPlane) SandboxWaitV2(ctx context.Context, req *pb.SandboxWaitRequest) (*pb.SandboxWaitResponse, error) {
	return c.wait(ctx, req)
}

// wait blocks until the sandbox finishes or the request's timeout passes;
// the result is nil while it runs.
func (c *controlPlane) wait(ctx context.Context, req *pb.SandboxWaitRequest) (*pb.SandboxWaitResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if d := time.Duration(float64(req.GetTimeout()) * float64(time.Second)); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-sb.done:
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return pb.SandboxWaitResponse_builder{Result: sb.resultNow(), Metadata: sb.metadata()}.Build(), nil
}

func (c *controlPlane) SandboxTerminate(ctx context.Context, req *pb.SandboxTerminateRequest) (*pb.SandboxTerminateResponse, error) {
	return c.terminate(req)
}

func (c *controlPlane) SandboxTerminateV2(ctx context.Context, req *pb.SandboxTerminateRequest) (*pb.SandboxTerminateResponse, error) {
	return c.terminate(req)
}

func (c *controlPlane) terminate(req *pb.SandboxTerminateRequest) (*pb.SandboxTerminateResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	existing := sb.resultNow()
	sb.finish(terminatedResult(), statusTerminated)
	return pb.SandboxTerminateResponse_builder{ExistingResult: existing}.Build(), nil
}

func (c *controlPlane) SandboxGetFromName(ctx context.Context, req *pb.SandboxGetFromNameRequest) (*pb.SandboxGetFromNameResponse, error) {
	return c.fromName(req)
}

func (c *controlPlane) SandboxGetFromNameV2(ctx context.Context, req *pb.SandboxGetFromNameRequest) (*pb.SandboxGetFromNameResponse, error) {
	return c.fromName(req)
}

// fromName finds the running sandbox with a name in an app or, with
// include_terminated and none running, the newest one that had it.
func (c *controlPlane) fromName(req *pb.SandboxGetFromNameRequest) (*pb.SandboxGetFromNameResponse, error) {
	s := c.s
	s.mu.Lock()
	env := normEnv(req.GetEnvironmentName())
	a := s.appsByName[appKey{env, req.GetAppName()}]
	var best *sandbox
	if a != nil {
		for _, sb := range s.sandboxes {
			if sb.app != a || sb.currentName() != req.GetSandboxName() {
				continue
			}
			if sb.running() {
				best = sb
				break
			}
			if req.GetIncludeTerminated() && (best == nil || sb.createdAt > best.createdAt) {
				best = sb
			}
		}
	}
	s.mu.Unlock()
	if best == nil {
		return nil, status.Errorf(codes.NotFound, "Sandbox with name '%s' not found in App '%s'", req.GetSandboxName(), req.GetAppName())
	}
	return pb.SandboxGetFromNameResponse_builder{SandboxId: best.id, Metadata: best.metadata()}.Build(), nil
}

func (c *controlPlane) SandboxSetName(ctx context.Context, req *pb.SandboxSetNameRequest) (*pb.SandboxSetNameResponse, error) {
	s := c.s
	sb, err := s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.v2 {
		return nil, status.Error(codes.InvalidArgument, "only V2 sandboxes can be named after they are created")
	}
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "the name must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.sandboxes {
		if o != sb && o.app == sb.app && o.running() && o.currentName() == req.GetName() {
			return nil, status.Errorf(codes.AlreadyExists, "Sandbox with name '%s' already exists in App '%s'", req.GetName(), sb.app.name)
		}
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.name != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s already has the name '%s'", sb.id, sb.name)
	}
	sb.name = req.GetName()
	return &pb.SandboxSetNameResponse{}, nil
}

func (c *controlPlane) SandboxList(ctx context.Context, req *pb.SandboxListRequest) (*pb.SandboxListResponse, error) {
	return c.list(req)
}

func (c *controlPlane) SandboxListV2(ctx context.Context, req *pb.SandboxListRequest) (*pb.SandboxListResponse, error) {
	return c.list(req)
}

// list returns one page, newest first, of the sandboxes created strictly
// before before_timestamp (any time when 0) that match the filters; an
// empty page is the end.
func (c *controlPlane) list(req *pb.SandboxListRequest) (*pb.SandboxListResponse, error) {
	s := c.s
	want := map[string]string{}
	for _, t := range req.GetTags() {
		want[t.GetTagName()] = t.GetTagValue()
	}
	s.mu.Lock()
	if id := req.GetAppId(); id != "" && s.apps[id] == nil {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "App '%s' not found", id)
	}
	env := normEnv(req.GetEnvironmentName())
	var match []*sandbox
	for _, sb := range s.sandboxes {
		switch {
		case req.GetAppId() != "" && sb.app.id != req.GetAppId():
		case req.GetAppId() == "" && sb.app.env != env:
		case !req.GetIncludeFinished() && !sb.running():
		case req.GetBeforeTimestamp() > 0 && sb.createdAt >= req.GetBeforeTimestamp():
		case !sb.hasTags(want):
		default:
			match = append(match, sb)
		}
	}
	s.mu.Unlock()
	sort.Slice(match, func(i, j int) bool { return match[i].createdAt > match[j].createdAt })
	if len(match) > s.opts.ListPageSize {
		match = match[:s.opts.ListPageSize]
	}
	infos := make([]*pb.SandboxInfo, len(match))
	for i, sb := range match {
		infos[i] = sb.info()
	}
	return pb.SandboxListResponse_builder{Sandboxes: infos}.Build(), nil
}

func (sb *sandbox) hasTags(want map[string]string) bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for k, v := range want {
		if got, ok := sb.tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (sb *sandbox) tagList() []*pb.SandboxTag {
	sb.mu.Lock()
	keys := slices.Sorted(maps.Keys(sb.tags))
	out := make([]*pb.SandboxTag, len(keys))
	for i, k := range keys {
		out[i] = pb.SandboxTag_builder{TagName: k, TagValue: sb.tags[k]}.Build()
	}
	sb.mu.Unlock()
	return out
}

func (sb *sandbox) info() *pb.SandboxInfo {
	res := sb.resultNow()
	sb.mu.Lock()
	finished := sb.finishedAt
	name := sb.name
	sb.mu.Unlock()
	ti := pb.TaskInfo_builder{
		Id: sb.taskID, SandboxId: sb.id, StartedAt: sb.createdAt, EnqueuedAt: sb.createdAt, Result: res,
		GpuConfig: sb.def.GetResources().GetGpuConfig(), GpuType: sb.def.GetResources().GetGpuConfig().GetGpuType(),
	}
	if !finished.IsZero() {
		ti.FinishedAt = float64(finished.UnixMicro()) / 1e6
	}
	var idle *uint32
	if sb.def.HasIdleTimeoutSecs() {
		v := sb.def.GetIdleTimeoutSecs()
		idle = &v
	}
	var tunnels []*pb.TunnelData
	for _, t := range sb.tunnelList() {
		tunnels = append(tunnels, t.data())
	}
	return pb.SandboxInfo_builder{
		Id: sb.id, CreatedAt: sb.createdAt, AppId: sb.app.id, Tags: sb.tagList(), Name: name,
		ImageId: sb.img.id, TaskInfo: ti.Build(), TimeoutSecs: uint32(sb.timeout / time.Second),
		IdleTimeoutSecs: idle, ReadinessProbe: sb.def.GetReadinessProbe(), Tunnels: tunnels,
		Metadata: sb.metadata(),
	}.Build()
}

func (c *controlPlane) SandboxTagsSet(ctx context.Context, req *pb.SandboxTagsSetRequest) (*emptypb.Empty, error) {
	return c.setTags(req)
}

func (c *controlPlane) SandboxTagsSetV2(ctx context.Context, req *pb.SandboxTagsSetRequest) (*emptypb.Empty, error) {
	return c.setTags(req)
}

func (c *controlPlane) setTags(req *pb.SandboxTagsSetRequest) (*emptypb.Empty, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for _, t := range req.GetTags() {
		if t.GetTagName() == "" {
			return nil, status.Error(codes.InvalidArgument, "tag names must not be empty")
		}
		tags[t.GetTagName()] = t.GetTagValue()
	}
	sb.mu.Lock()
	sb.tags = tags
	sb.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func (c *controlPlane) SandboxTagsGet(ctx context.Context, req *pb.SandboxTagsGetRequest) (*pb.SandboxTagsGetResponse, error) {
	return c.getTags(req)
}

func (c *controlPlane) SandboxTagsGetV2(ctx context.Context, req *pb.SandboxTagsGetRequest) (*pb.SandboxTagsGetResponse, error) {
	return c.getTags(req)
}

func (c *controlPlane) getTags(req *pb.SandboxTagsGetRequest) (*pb.SandboxTagsGetResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return pb.SandboxTagsGetResponse_builder{Tags: sb.tagList()}.Build(), nil
}

func (c *controlPlane) SandboxGetTunnels(ctx context.Context, req *pb.SandboxGetTunnelsRequest) (*pb.SandboxGetTunnelsResponse, error) {
	return c.tunnels(req)
}

func (c *controlPlane) SandboxGetTunnelsV2(ctx context.Context, req *pb.SandboxGetTunnelsRequest) (*pb.SandboxGetTunnelsResponse, error) {
	return c.tunnels(req)
}

func (c *controlPlane) tunnels(req *pb.SandboxGetTunnelsRequest) (*pb.SandboxGetTunnelsResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.running() {
		return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	var tunnels []*pb.TunnelData
	for _, t := range sb.tunnelList() {
		tunnels = append(tunnels, t.data())
	}
	return pb.SandboxGetTunnelsResponse_builder{
		Result:  pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}.Build(),
		Tunnels: tunnels,
	}.Build(), nil
}

// SandboxStdinWrite is a V1 sandbox's entrypoint stdin: writes carry an
// index from 1; a repeated index is a retry and applies once.
func (c *controlPlane) SandboxStdinWrite(ctx context.Context, req *pb.SandboxStdinWriteRequest) (*pb.SandboxStdinWriteResponse, error) {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.running() {
		return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	sb.touch()
	sb.stdinMu.Lock()
	defer sb.stdinMu.Unlock()
	if req.GetIndex() != 0 && req.GetIndex() <= sb.stdinIndex {
		return &pb.SandboxStdinWriteResponse{}, nil
	}
	written, _ := sb.stdin.state()
	if err := sb.stdin.write(ctx, written, req.GetInput(), req.GetEof(), false); err != nil {
		return nil, err
	}
	sb.stdinIndex = req.GetIndex()
	return &pb.SandboxStdinWriteResponse{}, nil
}

// logsHold is how long SandboxGetLogs waits for output before ending the
// stream for the client to reopen, when the request names no timeout.
const logsHold = 55 * time.Second

// SandboxGetLogs streams a V1 sandbox's entrypoint stdout or stderr as log
// batches. Entry ids are "<byte offset>-0".
func (c *controlPlane) SandboxGetLogs(req *pb.SandboxGetLogsRequest, stream grpc.ServerStreamingServer[pb.TaskLogsBatch]) error {
	sb, err := c.s.sandbox(req.GetSandboxId())
	if err != nil {
		return err
	}
	var out *output
	switch req.GetFileDescriptor() {
	case pb.FileDescriptor_FILE_DESCRIPTOR_STDOUT:
		out = sb.stdout
	case pb.FileDescriptor_FILE_DESCRIPTOR_STDERR:
		out = sb.stderr
	default:
		return status.Errorf(codes.InvalidArgument, "unsupported file descriptor %v", req.GetFileDescriptor())
	}
	var off uint64
	if id := req.GetLastEntryId(); id != "" {
		n, _, _ := strings.Cut(id, "-")
		v, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "malformed last_entry_id %q", id)
		}
		off = v
	}
	hold := time.Duration(float64(req.GetTimeout()) * float64(time.Second))
	if hold <= 0 {
		hold = logsHold
	}
	ctx := stream.Context()
	timer := time.NewTimer(hold)
	defer timer.Stop()
	for {
		data, eof, wait := out.read(off, 1<<20)
		switch {
		case len(data) > 0:
			n := completeRunes(data)
			if n == 0 {
				n = len(data) // an invalid byte: send it as a replacement
			}
			off += uint64(n)
			batch := pb.TaskLogsBatch_builder{
				TaskId: sb.taskID, SandboxId: sb.id, EntryId: fmt.Sprintf("%d-0", off),
				Items: []*pb.TaskLogs{pb.TaskLogs_builder{
					Data: strings.ToValidUTF8(string(data[:n]), "\uFFFD"), FileDescriptor: req.GetFileDescriptor(),
					Timestamp: float64(time.Now().UnixMicro()) / 1e6,
				}.Build()},
			}.Build()
			if err := stream.Send(batch); err != nil {
				return err
			}
		case eof:
			return stream.Send(pb.TaskLogsBatch_builder{TaskId: sb.taskID, SandboxId: sb.id, EntryId: fmt.Sprintf("%d-0", off), Eof: true}.Build())
		default:
			select {
			case <-wait:
			case <-timer.C:
				return nil // the client reopens from its last entry id
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
	}
}

// completeRunes returns the length of data without a trailing incomplete
// UTF-8 sequence, which waits for the rest of its bytes.
func completeRunes(data []byte) int {
	for i := 1; i <= 3 && i <= len(data); i++ {
		b := data[len(data)-i]
		if !utf8.RuneStart(b) {
			continue
		}
		if !utf8.FullRune(data[len(data)-i:]) {
			return len(data) - i
		}
		break
	}
	return len(data)
}
