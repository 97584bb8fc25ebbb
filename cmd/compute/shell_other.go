//go:build !unix

package main

import (
	"errors"
	"os"
)

// inputStops says that terminalInput.Read returns after Stop: not here.
const inputStops = false

// errInputStopped would end Read after Stop.
var errInputStopped = errors.New("terminal input stopped")

// notifyResize does nothing: this system has no SIGWINCH, so the sandbox's
// terminal keeps the size it started with.
func notifyResize(chan<- os.Signal) {}

// terminalInput reads the keys typed on the console. A read of the
// console cannot be interrupted: after Stop, the goroutine blocked in it
// ends at the next key or when the process exits.
type terminalInput struct{ f *os.File }

func newTerminalInput(f *os.File) (*terminalInput, error) { return &terminalInput{f}, nil }

func (in *terminalInput) Read(p []byte) (int, error) { return in.f.Read(p) }

// Stop does nothing here (see terminalInput).
func (in *terminalInput) Stop() {}

// Close does nothing: standard input stays open.
func (in *terminalInput) Close() error { return nil }
