package modaltest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"strings"
	"time"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// controlPlane implements modal.client.ModalClient. RPCs it does not
// implement answer Unimplemented.
type controlPlane struct {
	pb.UnimplementedModalClientServer
	s *Server
}

// defaultEnvironment is the name of the environment an empty name means.
const defaultEnvironment = "main"

// anyEnvironment keys named secrets visible in every environment.
const anyEnvironment = "\x00any"

type environment struct {
	id, name string
}

type appKey struct{ env, name string }

type app struct {
	id, name, env string
	created       time.Time
}

type image struct {
	id string
	// tag is the registry image the chain starts from.
	tag string
	// commands are all build commands, base image first.
	commands []string
	// files is a tar of the files a snapshot captured, restored into every
	// sandbox made from the image; nil for registry images.
	files []byte
	// dirSnapshot is true for directory snapshots (for TaskMountDirectory).
	dirSnapshot bool
	// env and workdir come from ENV and WORKDIR instructions.
	env     map[string]string
	workdir string
	// rootImage is the image store's id of the registry image whose
	// files the image's sandboxes see (CreateOptions.Image); empty when
	// they run this machine's programs.
	rootImage string
	// result is the build's outcome.
	result  *pb.GenericResult
	created time.Time
}

type secret struct {
	id, name, env string
	values        map[string]string
}

func normEnv(name string) string {
	if name == "" {
		return defaultEnvironment
	}
	return name
}

func (s *Server) environmentLocked(name string) *environment {
	name = normEnv(name)
	e := s.envs[name]
	if e == nil {
		e = &environment{id: newID("en"), name: name}
		s.envs[name] = e
	}
	return e
}

func (s *Server) addNamedSecret(env, name string, values map[string]string) *secret {
	sec := &secret{id: newID("st"), name: name, env: env, values: maps.Clone(values)}
	s.secrets[sec.id] = sec
	s.named[appKey{env, name}] = sec
	return sec
}

// SetSecret creates or replaces a named secret (Secrets.FromName) in every
// environment.
func (s *Server) SetSecret(name string, values map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addNamedSecret(anyEnvironment, name, values)
}

func (c *controlPlane) AuthTokenGet(ctx context.Context, req *pb.AuthTokenGetRequest) (*pb.AuthTokenGetResponse, error) {
	tok := c.s.mintJWT(claims{Sub: c.s.TokenID, Kind: "auth"}, c.s.opts.AuthTokenTTL)
	return pb.AuthTokenGetResponse_builder{Token: tok}.Build(), nil
}

func (c *controlPlane) EnvironmentGetOrCreate(ctx context.Context, req *pb.EnvironmentGetOrCreateRequest) (*pb.EnvironmentGetOrCreateResponse, error) {
	s := c.s
	s.mu.Lock()
	e := s.environmentLocked(req.GetDeploymentName())
	s.mu.Unlock()
	return pb.EnvironmentGetOrCreateResponse_builder{
		EnvironmentId: e.id,
		Metadata: pb.EnvironmentMetadata_builder{
			Name: e.name,
			Settings: pb.EnvironmentSettings_builder{
				ImageBuilderVersion: s.opts.ImageBuilderVersion,
				WebhookSuffix:       "modal.run",
			}.Build(),
		}.Build(),
	}.Build(), nil
}

func (c *controlPlane) AppGetOrCreate(ctx context.Context, req *pb.AppGetOrCreateRequest) (*pb.AppGetOrCreateResponse, error) {
	s := c.s
	name := req.GetAppName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "app name must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	env := s.environmentLocked(req.GetEnvironmentName()).name
	a := s.appsByName[appKey{env, name}]
	if a == nil {
		switch req.GetObjectCreationType() {
		case pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
			pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
			pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS,
			pb.ObjectCreationType_OBJECT_CREATION_TYPE_EPHEMERAL:
		default:
			return nil, status.Errorf(codes.NotFound, "App '%s' not found in environment '%s'", name, env)
		}
		a = &app{id: newID("ap"), name: name, env: env, created: time.Now()}
		s.apps[a.id] = a
		s.appsByName[appKey{env, name}] = a
	} else if req.GetObjectCreationType() == pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS {
		return nil, status.Errorf(codes.AlreadyExists, "App '%s' already exists in environment '%s'", name, env)
	}
	return pb.AppGetOrCreateResponse_builder{
		AppId:          a.id,
		HandleMetadata: pb.AppHandleMetadata_builder{Description: a.name, AppId: a.id, EnvironmentName: a.env}.Build(),
	}.Build(), nil
}

func (c *controlPlane) SecretGetOrCreate(ctx context.Context, req *pb.SecretGetOrCreateRequest) (*pb.SecretGetOrCreateResponse, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	env := s.environmentLocked(req.GetEnvironmentName()).name
	name := req.GetDeploymentName()
	typ := req.GetObjectCreationType()
	if name == "" {
		if typ != pb.ObjectCreationType_OBJECT_CREATION_TYPE_EPHEMERAL && typ != pb.ObjectCreationType_OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP {
			return nil, status.Error(codes.InvalidArgument, "a secret needs a name unless it is ephemeral")
		}
		sec := &secret{id: newID("st"), env: env, values: maps.Clone(req.GetEnvDict())}
		s.secrets[sec.id] = sec
		return pb.SecretGetOrCreateResponse_builder{SecretId: sec.id}.Build(), nil
	}
	sec := s.named[appKey{env, name}]
	if sec == nil {
		sec = s.named[appKey{anyEnvironment, name}]
	}
	switch typ {
	case pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
		if sec == nil {
			sec = s.addNamedSecret(env, name, req.GetEnvDict())
		}
	case pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
		if sec != nil {
			return nil, status.Errorf(codes.AlreadyExists, "Secret '%s' already exists", name)
		}
		sec = s.addNamedSecret(env, name, req.GetEnvDict())
	case pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS:
		sec = s.addNamedSecret(env, name, req.GetEnvDict())
	}
	if sec == nil {
		return nil, status.Errorf(codes.NotFound, "Secret '%s' not found in environment '%s'", name, env)
	}
	var missing []string
	for _, k := range req.GetRequiredKeys() {
		if _, ok := sec.values[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret is missing key(s): %s", strings.Join(missing, ", "))
	}
	return pb.SecretGetOrCreateResponse_builder{SecretId: sec.id}.Build(), nil
}

func (c *controlPlane) SecretDelete(ctx context.Context, req *pb.SecretDeleteRequest) (*emptypb.Empty, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[req.GetSecretId()]
	if sec == nil {
		return nil, status.Errorf(codes.NotFound, "Secret '%s' not found", req.GetSecretId())
	}
	delete(s.secrets, sec.id)
	for k, v := range s.named {
		if v == sec {
			delete(s.named, k)
		}
	}
	return &emptypb.Empty{}, nil
}

// resolveSecrets returns the environment the secrets and sources give, in
// order (later ones win).
func (s *Server) resolveSecrets(ids []string, sources []*pb.SecretSource) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	env := map[string]string{}
	add := func(id string) error {
		sec := s.secrets[id]
		if sec == nil {
			return status.Errorf(codes.NotFound, "Secret '%s' not found", id)
		}
		maps.Copy(env, sec.values)
		return nil
	}
	for _, id := range ids {
		if err := add(id); err != nil {
			return nil, err
		}
	}
	for _, src := range sources {
		switch {
		case src.HasSecretId():
			if err := add(src.GetSecretId()); err != nil {
				return nil, err
			}
		case src.HasEnv():
			maps.Copy(env, src.GetEnv().GetContents())
		}
	}
	return env, nil
}

func (c *controlPlane) ImageGetOrCreate(ctx context.Context, req *pb.ImageGetOrCreateRequest) (*pb.ImageGetOrCreateResponse, error) {
	s := c.s
	def := req.GetImage()
	cmds := def.GetDockerfileCommands()
	if len(cmds) == 0 {
		return nil, status.Error(codes.InvalidArgument, "image has no Dockerfile commands")
	}
	from, ok := strings.CutPrefix(strings.TrimSpace(cmds[0]), "FROM ")
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "the first Dockerfile command must be FROM, got %q", cmds[0])
	}
	from = strings.TrimSpace(from)
	img := &image{tag: from, created: time.Now()}
	var parentID string
	s.mu.Lock()
	for _, b := range def.GetBaseImages() {
		if b.GetDockerTag() == from {
			parent := s.images[b.GetImageId()]
			if parent == nil {
				s.mu.Unlock()
				return nil, status.Errorf(codes.NotFound, "Image '%s' not found", b.GetImageId())
			}
			parentID = parent.id
			img.tag = parent.tag
			img.commands = append(img.commands, parent.commands...)
			img.files = parent.files
			img.env = maps.Clone(parent.env)
			img.workdir = parent.workdir
		}
	}
	if parentID == "" {
		img.commands = append(img.commands, cmds[0])
	}
	img.commands = append(img.commands, cmds[1:]...)
	sum := sha256.Sum256([]byte(parentID + "\x00" + strings.Join(cmds, "\x00") + "\x00" + req.GetBuilderVersion()))
	key := hex.EncodeToString(sum[:])
	if id, ok := s.imageByDef[key]; ok && !req.GetForceBuild() {
		img = s.images[id]
		s.mu.Unlock()
		return c.imageResponse(img), nil
	}
	s.mu.Unlock()

	// Builds happen one at a time.
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	img.result = pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}.Build()
	switch {
	case parentID == "" && len(cmds) == 1:
		img.rootImage = s.resolveImageFiles(ctx, from)
		if err := ctx.Err(); err != nil {
			// A pull cut short is no answer to remember.
			return nil, status.FromContextError(err).Err()
		}
	case s.opts.ImageFiles != ImageFilesHost:
		s.log.Warn("modaltest: the image has Dockerfile commands, which the emulator builds and runs on this machine's programs, not on the files of its base image", "image", img.tag, "commands", len(img.commands)-1)
	}
	if len(cmds) > 1 {
		// The layer's secrets are in the environment of its RUN commands
		// only.
		secretEnv, err := s.resolveSecrets(def.GetSecretIds(), nil)
		if err != nil {
			return nil, err
		}
		img.result = s.buildLayer(ctx, img, cmds[1:], secretEnv)
	}
	img.id = newID("im")
	s.mu.Lock()
	s.images[img.id] = img
	if img.result.GetStatus() == pb.GenericResult_GENERIC_STATUS_SUCCESS {
		s.imageByDef[key] = img.id
	}
	s.mu.Unlock()
	return c.imageResponse(img), nil
}

func (c *controlPlane) imageResponse(img *image) *pb.ImageGetOrCreateResponse {
	return pb.ImageGetOrCreateResponse_builder{ImageId: img.id, Result: img.result, Metadata: c.imageMetadata()}.Build()
}

func (c *controlPlane) imageMetadata() *pb.ImageMetadata {
	v := c.s.opts.ImageBuilderVersion
	return pb.ImageMetadata_builder{ImageBuilderVersion: &v}.Build()
}

func (c *controlPlane) ImageJoinStreaming(req *pb.ImageJoinStreamingRequest, stream grpc.ServerStreamingServer[pb.ImageJoinStreamingResponse]) error {
	if _, err := c.s.imageByID(req.GetImageId()); err != nil {
		return err
	}
	img, _ := c.s.imageByID(req.GetImageId())
	return stream.Send(pb.ImageJoinStreamingResponse_builder{
		Result:   img.result,
		EntryId:  "1-0",
		Eof:      true,
		Metadata: c.imageMetadata(),
	}.Build())
}

func (c *controlPlane) ImageFromId(ctx context.Context, req *pb.ImageFromIdRequest) (*pb.ImageFromIdResponse, error) {
	img, err := c.s.imageByID(req.GetImageId())
	if err != nil {
		return nil, err
	}
	return pb.ImageFromIdResponse_builder{ImageId: img.id, Metadata: c.imageMetadata()}.Build(), nil
}

func (c *controlPlane) ImageDelete(ctx context.Context, req *pb.ImageDeleteRequest) (*emptypb.Empty, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.images[req.GetImageId()] == nil {
		return nil, status.Errorf(codes.NotFound, "Image '%s' not found", req.GetImageId())
	}
	delete(s.images, req.GetImageId())
	for k, id := range s.imageByDef {
		if id == req.GetImageId() {
			delete(s.imageByDef, k)
		}
	}
	return &emptypb.Empty{}, nil
}

func (s *Server) imageByID(id string) (*image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img := s.images[id]
	if img == nil {
		return nil, status.Errorf(codes.NotFound, "Image '%s' not found", id)
	}
	return img, nil
}

func (s *Server) newSnapshotImage(parent *image, files []byte, dir bool) *image {
	img := &image{
		id: newID("im"), files: files, dirSnapshot: dir, created: time.Now(),
		result: pb.GenericResult_builder{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}.Build(),
	}
	if parent != nil {
		img.tag = parent.tag
		img.commands = append([]string(nil), parent.commands...)
		img.env = maps.Clone(parent.env)
		img.workdir = parent.workdir
		img.rootImage = parent.rootImage
	}
	s.mu.Lock()
	s.images[img.id] = img
	s.mu.Unlock()
	return img
}

// Image describes an image the server holds, for tests.
type Image struct {
	ID string
	// Tag is the registry tag the image starts from.
	Tag string
	// DockerfileCommands are its build commands, base image first.
	DockerfileCommands []string
	// SnapshotBytes is the size of the files a snapshot captured; 0 for
	// registry images.
	SnapshotBytes int
	// Files is the image store's id ("sha256:...") of the image whose
	// files its sandboxes see (Options.ImageFiles); empty when they run
	// this machine's programs.
	Files string
}

// Images returns the images the server holds.
func (s *Server) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		out = append(out, Image{ID: img.id, Tag: img.tag, DockerfileCommands: append([]string(nil), img.commands...), SnapshotBytes: len(img.files), Files: img.rootImage})
	}
	return out
}
