// Package agentbin holds the local provider's sandbox agent as a small
// static program of its own (local/internal/agent/cmd/compute-agent),
// built for Linux on amd64 and arm64 and embedded in the host's program.
//
// A sandbox's first process is the agent. Re-executing the host's own
// program for it, as the local provider did before, made every sandbox
// load a large, dynamically linked program and wait for its package
// initialisers (gRPC, protobuf, the Modal SDK, ...) before the agent's
// first line; the embedded agent starts in a fraction of that time.
// [Path] gives a path to start it from: a sealed memory file, written
// once per process. Where there is no agent for the architecture, or the
// kernel does not run programs from memory files, the host falls back to
// re-executing itself (the agent's package is in it too).
//
// The programs are generated, and committed so that `go get` needs no
// build step:
//
//	go generate ./local/internal/agentbin
//
// SourceHash records the sources they were built from; a test fails when
// the agent's code has changed since.
package agentbin

//go:generate go run ./gen
