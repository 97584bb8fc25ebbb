package modal

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/computesdk-go/compute/driver"
	modalsdk "github.com/modal-labs/modal-client/go"
)

// Defaults for Config's zero values.
const (
	// DefaultApp is the Modal app sandboxes belong to when Config.App is
	// empty (created on first use).
	DefaultApp = "computesdk"
	// DefaultPythonImage is the image of Python sandboxes (and of
	// sandboxes whose runtime is not given).
	DefaultPythonImage = "python:3.13-slim"
	// DefaultNodeImage is the image of sandboxes created with Runtime node.
	DefaultNodeImage = "node:22-slim"
	// DefaultTimeout is Modal's own default sandbox lifetime.
	DefaultTimeout = 5 * time.Minute
	// MaxTimeout is the longest lifetime Modal gives a sandbox.
	MaxTimeout = 24 * time.Hour
)

// Config configures a Provider. The zero value is valid: credentials come
// from the environment (MODAL_TOKEN_ID, MODAL_TOKEN_SECRET) or Modal's
// config file, sandboxes run python:3.13-slim in the app "computesdk" for
// Modal's default five minutes.
type Config struct {
	// TokenID and TokenSecret are the Modal API token. When empty, Modal's
	// SDK resolves them itself: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, then
	// the active profile of ~/.modal.toml (MODAL_CONFIG_PATH and
	// MODAL_PROFILE choose another file or profile). Missing credentials
	// are reported by Create with an error matching
	// driver.ErrMissingCredentials.
	TokenID, TokenSecret string
	// Environment is the Modal environment ("main", "sandbox", ...); empty
	// means MODAL_ENVIRONMENT, else the profile's, else the workspace's
	// default.
	Environment string
	// Runtime is the default runtime of sandboxes whose CreateOptions name
	// none: it picks their image (PythonImage or NodeImage) and RunCode's
	// default. Empty means Python.
	Runtime driver.Runtime
	// Timeout is the default lifetime of a sandbox (CreateOptions.Timeout
	// overrides it); zero means Modal's default, DefaultTimeout. Modal
	// counts whole seconds (a fraction is rounded up) and allows at most
	// MaxTimeout.
	Timeout time.Duration
	// App is the Modal app the sandboxes are created in, and the one List
	// lists; created if missing. Empty means DefaultApp.
	App string
	// PythonImage and NodeImage are the images for each runtime, as
	// registry tags; empty means DefaultPythonImage and DefaultNodeImage.
	// SandboxOptions.Image and CreateOptions.Image override both.
	PythonImage, NodeImage string
	// Tags are added to every sandbox, and List returns only the sandboxes
	// of App that have all of them (and the provider's own tag).
	Tags map[string]string
	// Sandbox holds the Modal options every sandbox starts from (GPU,
	// CPU, memory, ports, secrets, ...); Provider.With derives providers
	// with more.
	Sandbox SandboxOptions
	// ServerURL is the address of the Modal API; empty means
	// MODAL_SERVER_URL, else the profile's, else https://api.modal.com:443.
	// Set it to a modaltest.Server's URL to run against the emulator; the
	// SDK reaches the command router in plaintext only when this is a
	// loopback address. When set, Modal's config file is not read.
	ServerURL string
	// Client is a Modal SDK client to use instead of making one: then
	// TokenID, TokenSecret, Environment and ServerURL are the client's,
	// and Close does not close it.
	Client *modalsdk.Client
	// Logger receives the SDK's diagnostics; nil means the SDK's default
	// (text on stderr, from level MODAL_LOGLEVEL, WARN when unset).
	Logger *slog.Logger
	// Progress, when set, is called as a sandbox is being made ("building
	// image python:3.13-slim", "starting sandbox", ...), for interfaces
	// that show what a slow create is doing. It must not block.
	Progress func(msg string)
	// Prestart is how many sandboxes the provider keeps started ahead of
	// demand (a warm pool, at most MaxPrestart), so that a Create takes a
	// running one instead of waiting for Modal: it saves the create's
	// round trip and Modal's start-up. Zero, the default, keeps none:
	// Modal bills a prestarted sandbox while it waits, as any running one.
	//
	// The pool holds sandboxes with the provider's default options
	// (Config.Sandbox and nothing else), and only a Create whose options
	// are exactly those gets one: no CreateOptions field set (Provider
	// aside), not through a provider from With with other options. Other
	// Creates start their own sandbox, as without a pool. New starts
	// filling it, and a Create that takes one starts its replacement.
	// A pooled sandbox is started with a lifetime one minute longer
	// than the default one and is replaced (terminated, another started)
	// when it has waited a minute, so the sandbox a Create gets runs at
	// least as long as a fresh one would (Info reports its real start and
	// lifetime). One that ends while it waits is dropped, never handed
	// out. Pooled sandboxes carry the tag computesdk-pool instead of the
	// provider's own, so List does not show them; a handed out one gets
	// its tags in the background (List waits for that).
	//
	// Close terminates the pool (sandboxes handed out keep running, as
	// always). Failures to start one are logged and leave the pool short
	// until the next Create, which reports such errors itself.
	// Prestart cannot be combined with Sandbox.Name (names are unique) or
	// Sandbox.IdleTimeout (a waiting sandbox is idle).
	Prestart int
}

// MaxPrestart is the largest Config.Prestart: a guard against a typo
// that would keep hundreds of billed sandboxes waiting.
const MaxPrestart = 100

// SandboxOptions are Modal's own options for a sandbox. The zero value
// means Modal's defaults. Give them for every sandbox with Config.Sandbox,
// or for the sandboxes of one derived provider with Provider.With; the
// generic driver.CreateOptions of a Create (Timeout, Env, Dir, GPU,
// Network, NetworkAllow, Image) take precedence over them.
type SandboxOptions struct {
	// Image is the sandbox's image: a registry reference
	// ("python:3.13-slim", "ghcr.io/org/img:v1", "name@sha256:...") or the
	// id of an image Modal already has ("im-...", such as one
	// Sandbox.Snapshot returned). Empty means the runtime's image
	// (Config.PythonImage or Config.NodeImage); a Create's
	// CreateOptions.Image, the same for every provider, overrides it. Each
	// image is built once per provider. The image needs /bin/sh: commands
	// are started through it. Modal builds images from registries only:
	// "oci:" layouts and "docker-archive:" files are refused (push them to
	// a registry first). A Create's CreateOptions.ImageSteps are built on
	// it as Modal Dockerfile commands (once per provider; Modal caches
	// the result).
	Image string
	// GPU requests GPUs, as Modal writes them: "T4", "A10G", "L4",
	// "A100", "A100-80GB:2", "H100:8". A GPU sandbox is one of Modal's V1
	// sandboxes (the others are V2).
	GPU string
	// CPU is the CPU request in cores (0.125 to 64); CPULimit a hard cap.
	CPU, CPULimit float64
	// MemoryMiB is the memory request; MemoryLimitMiB a hard cap.
	MemoryMiB, MemoryLimitMiB int
	// Timeout is the sandbox's lifetime when CreateOptions.Timeout is zero.
	Timeout time.Duration
	// IdleTimeout ends the sandbox after this long without a command, a
	// stdin write or a tunnel connection.
	IdleTimeout time.Duration
	// Workdir is the default working directory (absolute) when
	// CreateOptions.Dir is empty; empty means the image's.
	Workdir string
	// Env is the environment of every command, under CreateOptions.Env.
	Env map[string]string
	// Secrets are Modal secrets by name, set as environment variables.
	Secrets []string
	// Volumes mounts Modal volumes by name (created if missing) at the
	// given absolute paths: {"/data": "my-volume"}.
	Volumes map[string]string
	// EncryptedPorts, H2Ports and UnencryptedPorts are exposed through
	// Modal's tunnels; Sandbox.URL gives their addresses.
	EncryptedPorts, H2Ports, UnencryptedPorts []int
	// BlockNetwork takes all outbound network away (as
	// driver.NetworkNone does).
	BlockNetwork bool
	// OutboundCIDRs and OutboundDomains, when set, allow outbound traffic
	// only to these CIDRs ("10.0.0.0/8") and domains ("api.example.com",
	// "*.example.com").
	OutboundCIDRs, OutboundDomains []string
	// Name is the sandbox's Modal name, unique among the app's running
	// sandboxes (Modal refuses a second one); CreateOptions.Name is a
	// label only.
	Name string
	// Tags are Modal tags on the sandbox, filterable in Modal's list.
	Tags map[string]string
	// App puts the sandbox in another app than Config.App (List still
	// lists Config.App).
	App string
	// Cloud and Regions pin where the sandbox runs ("aws", ["us-east"]).
	Cloud   string
	Regions []string
}

// merge returns o with the fields over sets replacing or adding to it.
func (o SandboxOptions) merge(over SandboxOptions) SandboxOptions {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&o.Image, over.Image)
	set(&o.GPU, over.GPU)
	set(&o.Workdir, over.Workdir)
	set(&o.Name, over.Name)
	set(&o.App, over.App)
	set(&o.Cloud, over.Cloud)
	if over.CPU != 0 {
		o.CPU = over.CPU
	}
	if over.CPULimit != 0 {
		o.CPULimit = over.CPULimit
	}
	if over.MemoryMiB != 0 {
		o.MemoryMiB = over.MemoryMiB
	}
	if over.MemoryLimitMiB != 0 {
		o.MemoryLimitMiB = over.MemoryLimitMiB
	}
	if over.Timeout != 0 {
		o.Timeout = over.Timeout
	}
	if over.IdleTimeout != 0 {
		o.IdleTimeout = over.IdleTimeout
	}
	o.Env = mergeMaps(o.Env, over.Env)
	o.Volumes = mergeMaps(o.Volumes, over.Volumes)
	o.Tags = mergeMaps(o.Tags, over.Tags)
	o.Secrets = append(slices.Clone(o.Secrets), over.Secrets...)
	if over.EncryptedPorts != nil {
		o.EncryptedPorts = over.EncryptedPorts
	}
	if over.H2Ports != nil {
		o.H2Ports = over.H2Ports
	}
	if over.UnencryptedPorts != nil {
		o.UnencryptedPorts = over.UnencryptedPorts
	}
	o.BlockNetwork = o.BlockNetwork || over.BlockNetwork
	if over.OutboundCIDRs != nil {
		o.OutboundCIDRs = over.OutboundCIDRs
	}
	if over.OutboundDomains != nil {
		o.OutboundDomains = over.OutboundDomains
	}
	if over.Regions != nil {
		o.Regions = over.Regions
	}
	return o
}

func mergeMaps[V any](a, b map[string]V) map[string]V {
	if len(b) == 0 {
		return a
	}
	out := maps.Clone(a)
	if out == nil {
		out = make(map[string]V, len(b))
	}
	maps.Copy(out, b)
	return out
}

// envName is the names Modal accepts for environment variables.
var envName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func checkEnv(env map[string]string) error {
	for k := range env {
		if !envName.MatchString(k) {
			return fmt.Errorf("modal: environment variable name %q is not accepted by Modal (letters, digits and _, not starting with a digit)", k)
		}
	}
	return nil
}

// createParams turns the options of one Create into the SDK's parameters.
// It returns the image reference, the app name and what Info reports.
func (p *Provider) createParams(opts *driver.CreateOptions) (*modalsdk.SandboxCreateParams, *meta, error) {
	o := p.opts
	cfg := p.s.cfg
	rt := opts.Runtime
	if rt == "" {
		rt = cfg.Runtime
	}
	if opts.Image != "" {
		o.Image = opts.Image
	}
	if err := checkImage(o.Image); err != nil {
		return nil, nil, err
	}
	if o.Image == "" {
		switch rt {
		case driver.Node:
			o.Image = cfg.NodeImage
		default:
			o.Image = cfg.PythonImage
		}
	}
	if opts.GPU != "" {
		o.GPU = opts.GPU
	}
	if o.GPU == "any" {
		o.GPU = "T4" // Modal's cheapest; "any" is compute's word for "a GPU"
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = o.Timeout
	}
	if timeout == 0 {
		timeout = cfg.Timeout
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout > MaxTimeout {
		return nil, nil, fmt.Errorf("modal: a sandbox lives at most %v on Modal, got a timeout of %v", MaxTimeout, timeout)
	}
	timeout = time.Duration(math.Ceil(timeout.Seconds())) * time.Second
	dir := o.Workdir
	if opts.Dir != "" {
		dir = opts.Dir
	}
	if dir != "" && dir[0] != '/' {
		return nil, nil, fmt.Errorf("modal: the working directory must be an absolute path on Modal, got %q", dir)
	}
	env := mergeMaps(o.Env, opts.Env)
	if err := checkEnv(env); err != nil {
		return nil, nil, err
	}
	if opts.Network == driver.NetworkHost && (o.BlockNetwork || o.OutboundCIDRs != nil || o.OutboundDomains != nil) {
		return nil, nil, errors.New("modal: CreateOptions.Network is host but the Modal options restrict the network")
	}
	if len(opts.NetworkAllow) > 0 {
		if o.BlockNetwork {
			return nil, nil, errors.New("modal: NetworkAllow cannot be combined with SandboxOptions.BlockNetwork")
		}
		for _, hp := range opts.NetworkAllow {
			host, _, err := net.SplitHostPort(hp)
			if err != nil {
				return nil, nil, fmt.Errorf("modal: network allowlist entry %q is not host:port", hp)
			}
			// Modal filters by address or domain, not by port.
			if ip := net.ParseIP(host); ip != nil {
				bits := 32
				if ip.To4() == nil {
					bits = 128
				}
				o.OutboundCIDRs = append(slices.Clone(o.OutboundCIDRs), fmt.Sprintf("%s/%d", ip, bits))
			} else {
				o.OutboundDomains = append(slices.Clone(o.OutboundDomains), host)
			}
		}
		if o.OutboundCIDRs == nil {
			o.OutboundCIDRs = []string{}
		}
		if o.OutboundDomains == nil {
			o.OutboundDomains = []string{}
		}
	} else if opts.Network == driver.NetworkNone {
		o.BlockNetwork = true
	}
	if o.BlockNetwork && (o.OutboundCIDRs != nil || o.OutboundDomains != nil) {
		return nil, nil, errors.New("modal: BlockNetwork cannot be combined with an outbound allowlist")
	}

	m := &meta{
		Created:  time.Now().UTC().Truncate(time.Millisecond),
		Timeout:  int64(timeout / time.Second),
		Name:     opts.Name,
		Runtime:  opts.Runtime,
		Metadata: opts.Metadata,
		Workdir:  dir,
		Image:    o.Image,
		GPU:      o.GPU,
	}
	if m.Name == "" {
		m.Name = o.Name
	}
	m.Ports = append(append(append([]int(nil), o.EncryptedPorts...), o.H2Ports...), o.UnencryptedPorts...)
	slices.Sort(m.Ports)
	m.Limits = limits(o, timeout)

	tags := make(map[string]string, len(cfg.Tags)+len(o.Tags)+2)
	maps.Copy(tags, cfg.Tags)
	maps.Copy(tags, o.Tags)
	tags[tagManaged] = tagManagedValue
	info, err := m.encode()
	if err != nil {
		return nil, nil, err
	}
	tags[tagInfo] = info

	params := &modalsdk.SandboxCreateParams{
		CPU: o.CPU, CPULimit: o.CPULimit,
		MemoryMiB: o.MemoryMiB, MemoryLimitMiB: o.MemoryLimitMiB,
		GPU:              o.GPU,
		Timeout:          timeout,
		IdleTimeout:      o.IdleTimeout,
		Workdir:          dir,
		Env:              env,
		EncryptedPorts:   o.EncryptedPorts,
		H2Ports:          o.H2Ports,
		UnencryptedPorts: o.UnencryptedPorts,
		BlockNetwork:     o.BlockNetwork,
		Cloud:            o.Cloud,
		Regions:          o.Regions,
		Name:             o.Name,
		Tags:             tags,
	}
	if o.OutboundCIDRs != nil {
		params.OutboundCIDRAllowlist = &modalsdk.Allowlist{Entries: o.OutboundCIDRs}
	}
	if o.OutboundDomains != nil {
		params.OutboundDomainAllowlist = &modalsdk.Allowlist{Entries: o.OutboundDomains}
	}
	return params, m, nil
}

// checkImage refuses the image sources Modal cannot build from: Modal
// pulls registry references itself, so files on this machine ("oci:DIR",
// "docker-archive:FILE") never reach it.
func checkImage(ref string) error {
	for _, prefix := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if strings.HasPrefix(ref, prefix) {
			return fmt.Errorf("modal: image %q is a local %s source, and Modal builds images only from registry references: push it to a registry Modal can reach (for example with crane push) and pass that reference: %w", ref, strings.TrimSuffix(prefix, ":"), driver.ErrUnsupported)
		}
	}
	return nil
}

// limits describes, for Info, what the sandbox was given.
func limits(o SandboxOptions, timeout time.Duration) []string {
	var out []string
	out = append(out, "runtime gVisor (Modal's sandbox isolation)", "lifetime "+timeout.String())
	if o.IdleTimeout > 0 {
		out = append(out, "idle timeout "+o.IdleTimeout.String())
	}
	if o.GPU != "" {
		out = append(out, "gpu "+o.GPU)
	}
	if o.CPU > 0 || o.CPULimit > 0 {
		s := "cpu request " + strconv.FormatFloat(o.CPU, 'f', -1, 64)
		if o.CPULimit > 0 {
			s += ", limit " + strconv.FormatFloat(o.CPULimit, 'f', -1, 64)
		}
		out = append(out, s+" cores")
	}
	if o.MemoryMiB > 0 || o.MemoryLimitMiB > 0 {
		s := fmt.Sprintf("memory request %d MiB", o.MemoryMiB)
		if o.MemoryLimitMiB > 0 {
			s += fmt.Sprintf(", limit %d MiB", o.MemoryLimitMiB)
		}
		out = append(out, s)
	}
	switch {
	case o.BlockNetwork:
		out = append(out, "network blocked")
	case o.OutboundCIDRs != nil || o.OutboundDomains != nil:
		out = append(out, fmt.Sprintf("network allowlist (cidrs %q, domains %q; Modal filters hosts, not ports)", o.OutboundCIDRs, o.OutboundDomains))
	default:
		out = append(out, "network open")
	}
	return out
}

// newClient makes the SDK client for cfg.
func newClient(cfg *Config) (*modalsdk.Client, error) {
	params := &modalsdk.ClientParams{
		TokenID:     cfg.TokenID,
		TokenSecret: cfg.TokenSecret,
		Environment: cfg.Environment,
		Logger:      cfg.Logger,
	}
	if params.Logger == nil {
		params.Logger = defaultLogger()
	}
	if cfg.ServerURL != "" {
		u, err := url.Parse(cfg.ServerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("modal: ServerURL %q is not an http:// or https:// URL", cfg.ServerURL)
		}
		if err := setServerURL(params, cfg.ServerURL); err != nil {
			return nil, err
		}
	}
	c, err := modalsdk.NewClientWithOptions(params)
	if err != nil {
		return nil, fmt.Errorf("modal: %w", err)
	}
	return c, nil
}

// setServerURL gives the SDK a profile with the server URL. The SDK reads
// the URL only from MODAL_SERVER_URL or its config file; its ClientParams
// take a whole config, of an unexported type, which is filled here by
// reflection rather than by changing the process's environment (which
// other goroutines may be reading). TestServerURLProfile guards the shape
// this relies on.
func setServerURL(params *modalsdk.ClientParams, serverURL string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("modal: cannot pass ServerURL to this version of Modal's SDK (%v); set MODAL_SERVER_URL instead", r)
		}
	}()
	field := reflect.ValueOf(params).Elem().FieldByName("Config")
	if !field.IsValid() || field.Kind() != reflect.Pointer || field.Type().Elem().Kind() != reflect.Map {
		return errors.New("modal: cannot pass ServerURL to this version of Modal's SDK; set MODAL_SERVER_URL instead")
	}
	mapType := field.Type().Elem()
	profile := reflect.New(mapType.Elem()).Elem()
	profile.FieldByName("ServerURL").SetString(serverURL)
	profile.FieldByName("Active").SetBool(true)
	m := reflect.MakeMap(mapType)
	m.SetMapIndex(reflect.ValueOf("computesdk"), profile)
	ptr := reflect.New(mapType)
	ptr.Elem().Set(m)
	field.Set(ptr)
	return nil
}
