package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/computesdk-go/compute/local"
	"github.com/computesdk-go/compute/server"
	"github.com/computesdk-go/compute/server/wire"
)

// tokenEnv is where serve, and run/exec --server, find the token when no
// flag gives it.
const tokenEnv = "COMPUTE_TOKEN"

type serveFlags struct {
	addr            string
	provider        string
	isolation       string
	token           string
	tokensFile      string
	maxSandboxes    int
	idleTimeout     time.Duration
	requestTimeout  time.Duration
	shutdownTimeout time.Duration
	allowNetwork    bool
	allowImages     bool
	imageRegistries string
	allowLocalImgs  bool
	tlsCert         string
	tlsKey          string
	logFormat       string
}

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Serve a provider over HTTP until interrupted",
		Long: `Serve a provider's sandboxes over HTTP until Ctrl-C or SIGTERM, then finish
the requests in flight (for up to --shutdown-timeout), cancel the rest and
destroy every sandbox the server created.

Endpoints (all under /api/compute; see the OpenAPI document):

  POST /api/compute                  the seed's JSON protocol (ComputeSDK's
                                     handleComputeRequest): {"action":
                                     "compute.sandbox.create", ...}
  /api/compute/v1/...                streaming exec (NDJSON), stdin, kill,
                                     raw file upload/download, stat, dirs;
                                     what "compute run/exec --server" and the
                                     Go remote provider use
  GET /api/compute/openapi.json      the OpenAPI 3 document (no token)
  GET /api/compute/v1/health         {"status":"ok"} (no token)

With a token (--token, or $COMPUTE_TOKEN), every other request must send
"Authorization: Bearer TOKEN". Without one the server listens only on a
loopback address and refuses browser requests from other sites; it refuses
to start on any other address. Serve plain HTTP only on loopback or behind
a TLS proxy, or give --tls-cert and --tls-key.

It prints where it listens on standard output; access logs (one line per
request) go to standard error.`,
		Example: `  # On this machine, no token needed
  compute serve
  curl -s localhost:8080/api/compute -d '{"action":"compute.sandbox.create"}'

  # Use it from the CLI (or from Go: remote.New(url, token))
  compute exec --server http://127.0.0.1:8080 -- uname -a

  # On the network: a token is required
  export COMPUTE_TOKEN=$(head -c 24 /dev/urandom | base64)
  compute serve --addr 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem

  # A free port, printed
  compute serve --addr 127.0.0.1:0`,
		Args: noArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.serve(cmd.Context(), &f)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on; port 0 picks a free one")
	fs.StringVar(&f.provider, "provider", "local", "provider that runs the sandboxes (available: "+strings.Join(providerNames(defaultProviders), ", ")+")")
	fs.StringVar(&f.isolation, "isolation", string(local.IsolationNamespaces), `local provider: "none" runs sandboxes as plain host processes, NOT isolated: trusted code only`)
	fs.StringVar(&f.token, "token", "", "bearer token clients must send (default: $"+tokenEnv+"); required off loopback")
	fs.StringVar(&f.tokensFile, "tokens", "", `file of per-client tokens, one "tenant:token" a line: each tenant sees only its own sandboxes; tenant "admin" sees all`)
	fs.IntVar(&f.maxSandboxes, "max-sandboxes", server.DefaultMaxSandboxes, "most sandboxes alive at once; more are refused with 429")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "destroy a sandbox no request used for this long; 0: never")
	fs.DurationVar(&f.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "limit on any request, a running command's stream included; 0: none")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on Ctrl-C or SIGTERM, how long requests in flight may finish before they are cancelled")
	fs.BoolVar(&f.allowNetwork, "allow-network", false, "let clients create sandboxes with the host's network (default: every sandbox has none); needs a token")
	fs.BoolVar(&f.allowImages, "allow-images", false, "let clients choose a sandbox's image (a registry reference the provider pulls: on local, with this machine's network, disk and registry credentials); default: the provider's image only")
	fs.BoolVar(&f.allowLocalImgs, "allow-local-images", false, "with --allow-images, also let clients name images among this machine's files (oci:DIR, docker-archive:FILE), read as the server's user; needs a token")
	fs.StringVar(&f.imageRegistries, "image-registries", "", "with --allow-images, the only registries clients' images may come from, comma-separated (ghcr.io,docker.io); default: any")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate file (PEM), with --tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key file (PEM) of --tls-cert")
	fs.StringVar(&f.logFormat, "log-format", "text", `access log format: "text" or "json"`)
	return cmd
}

func (a *app) serve(ctx context.Context, f *serveFlags) error {
	token := f.token
	if token == "" {
		token = os.Getenv(tokenEnv)
	}
	var tokens map[string]string
	if f.tokensFile != "" {
		file, err := os.Open(f.tokensFile)
		if err != nil {
			return usagef("--tokens: %v", err)
		}
		tokens, err = server.ParseTokens(file)
		file.Close()
		if err != nil {
			return usagef("--tokens %s: %v", f.tokensFile, err)
		}
	}
	host, _, err := net.SplitHostPort(f.addr)
	if err != nil {
		return usagef("--addr %q: want HOST:PORT (127.0.0.1:8080): %v", f.addr, err)
	}
	loopback := isLoopback(host)
	switch {
	case f.allowNetwork && token == "" && tokens == nil:
		return usagef("--allow-network needs a token (--token, $%s or --tokens): a sandbox with network could call a server without one as this machine", tokenEnv)
	case f.allowLocalImgs && !f.allowImages:
		return usagef("--allow-local-images goes with --allow-images")
	case f.allowLocalImgs && token == "" && tokens == nil:
		return usagef("--allow-local-images needs a token (--token, $%s or --tokens): without one, every user of this machine could read the server user's files as images", tokenEnv)
	case !loopback && token == "" && tokens == nil:
		return usagef("refusing to listen on %s without a token: set --token or $%s (clients send it as \"Authorization: Bearer TOKEN\"), or listen on 127.0.0.1", f.addr, tokenEnv)
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return usagef("--tls-cert and --tls-key go together")
	case f.maxSandboxes < 1:
		return usagef("--max-sandboxes must be at least 1, got %d", f.maxSandboxes)
	case f.idleTimeout < 0 || f.requestTimeout < 0 || f.shutdownTimeout < 0:
		return usagef("durations must not be negative")
	case f.logFormat != "text" && f.logFormat != "json":
		return usagef("unknown --log-format %q (want text or json)", f.logFormat)
	}
	switch local.Isolation(f.isolation) {
	case local.IsolationNamespaces, local.IsolationNone:
	default:
		return usagef("unknown --isolation %q (want %q or %q)", f.isolation, local.IsolationNamespaces, local.IsolationNone)
	}
	if f.isolation == string(local.IsolationNone) && !f.allowNetwork {
		// Unisolated processes have the host's network; the server's
		// promise of none cannot be kept.
		return usagef("--isolation none gives sandboxes this machine's network: add --allow-network to accept that")
	}
	if f.tlsCert != "" {
		// Check the files now, not when the first client connects, and
		// before announcing an address that would not work.
		if _, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey); err != nil {
			return usagef("--tls-cert %s / --tls-key %s: %v", f.tlsCert, f.tlsKey, err)
		}
	}
	if token != "" && len(token) < 16 {
		a.errorf("WARNING: the token is short (%d characters); use a long random one", len(token))
	}
	if !loopback && f.tlsCert == "" {
		a.errorf("WARNING: serving plain HTTP on %s: the token and all data cross the network in clear; use --tls-cert/--tls-key or a TLS proxy", f.addr)
	}
	if f.isolation == string(local.IsolationNone) {
		a.errorf("WARNING: --isolation none: every client's code runs as a plain process on this machine, as this user")
	}

	// A client's image build steps (RUN) get network only where its
	// sandboxes may.
	p, err := a.newProvider(f.provider, providerOptions{isolation: f.isolation, noBuildNetwork: !f.allowNetwork})
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); err != nil {
			a.errorf("closing the %s provider: %v", f.provider, err)
		}
	}()

	var h slog.Handler = slog.NewTextHandler(a.stderr, nil)
	if f.logFormat == "json" {
		h = slog.NewJSONHandler(a.stderr, nil)
	}
	logger := slog.New(h)
	opts := server.Options{
		Token:            token,
		Tokens:           tokens,
		MaxSandboxes:     f.maxSandboxes,
		IdleTimeout:      orNever(f.idleTimeout),
		RequestTimeout:   orNever(f.requestTimeout),
		AllowNetwork:     f.allowNetwork,
		AllowImages:      f.allowImages,
		AllowLocalImages: f.allowLocalImgs,
		ImageRegistries:  splitList(f.imageRegistries),
		Logger:           logger,
	}
	srv := server.New(p, opts) // without a token, it serves only this machine

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		srv.Close()
		return err
	}
	scheme := "http"
	if f.tlsCert != "" {
		scheme = "https"
	}
	base := scheme + "://" + clientAddr(ln.Addr().(*net.TCPAddr))
	hs := srv.HTTPServer() // with its limits on unauthenticated connections
	hs.ErrorLog = slog.NewLogLogger(h, slog.LevelWarn)
	served := make(chan error, 1)
	go func() {
		if f.tlsCert != "" {
			served <- hs.ServeTLS(ln, f.tlsCert, f.tlsKey)
		} else {
			served <- hs.Serve(ln)
		}
	}()

	auth := "none (loopback only)"
	if tokens != nil {
		auth = fmt.Sprintf("required: %d tenant tokens from %s", len(tokens), f.tokensFile)
	} else if token != "" {
		auth = "required: Authorization: Bearer $" + tokenEnv
		if f.token != "" {
			auth = "required: Authorization: Bearer <--token>"
		}
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		fmt.Fprintf(a.stdout, "listening on %s (every interface of this machine)\n", net.JoinHostPort(host, port))
		fmt.Fprintf(a.stdout, "  address:       %s\n", base)
	} else {
		fmt.Fprintf(a.stdout, "listening on %s\n", base)
	}
	fmt.Fprintf(a.stdout, "  provider:      %s\n", p.Name())
	fmt.Fprintf(a.stdout, "  seed protocol: POST %s%s\n", base, wire.ProtocolPath)
	fmt.Fprintf(a.stdout, "  v1 endpoints:  %s%s/...\n", base, wire.V1Path)
	fmt.Fprintf(a.stdout, "  OpenAPI:       GET  %s%s\n", base, wire.OpenAPIPath)
	fmt.Fprintf(a.stdout, "  web console:   %s/\n", base)
	fmt.Fprintf(a.stdout, "  MCP:           %s%s (streamable HTTP, tools for AI agents)\n", base, server.MCPPath)
	fmt.Fprintf(a.stdout, "  token:         %s\n", auth)
	fmt.Fprintf(a.stdout, "  clients:       compute exec --server %s -- CMD; remote.New(%q, token)\n", base, base)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	a.errorf("shutting down: finishing requests for up to %v, then destroying every sandbox", f.shutdownTimeout)
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdownTimeout)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		hs.Shutdown(grace) // stop accepting; wait for connections to go idle
		close(httpDone)
	}()
	if err := srv.Shutdown(grace); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			a.errorf("%v", strings.SplitN(err.Error(), "\n", 2)[0])
		} else {
			a.errorf("shutdown: %v", err)
		}
	}
	hs.Close()
	<-httpDone
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// orNever maps the CLI's "0: never" to the server's negative durations.
func orNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// clientAddr is the address clients use for a listener's: itself, or for
// one on every interface (0.0.0.0, [::]), this machine's first address
// that others can reach (loopback where there is none).
func clientAddr(a *net.TCPAddr) string {
	if !a.IP.IsUnspecified() {
		return a.String()
	}
	host := "127.0.0.1"
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok && n.IP.IsGlobalUnicast() && (n.IP.To4() != nil || a.IP.To4() == nil) {
				host = n.IP.String()
				break
			}
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(a.Port))
}
