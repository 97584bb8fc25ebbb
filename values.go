package compute

import "github.com/computesdk-go/compute/driver"

// The values users and providers share are defined in package driver, so
// that providers need not import this package; they are the same types
// under the same names here.

// CreateOptions configures a new sandbox. The zero value is valid and means
// the provider's defaults. See driver.CreateOptions for the fields.
type CreateOptions = driver.CreateOptions

// Info describes a sandbox. See driver.Info for the fields.
type Info = driver.Info

// FileInfo describes a file in a sandbox; its Info method gives the
// fs.FileInfo view. See driver.FileInfo for the fields.
type FileInfo = driver.FileInfo

// Runtime is a language runtime for RunCode.
type Runtime = driver.Runtime

// The runtimes RunCode knows.
const (
	Python = driver.Python
	Node   = driver.Node
)

// Network is a sandbox's network policy (CreateOptions.Network).
type Network = driver.Network

// The network policies.
const (
	// NetworkDefault is the provider's default: no network for local, full
	// access for cloud providers.
	NetworkDefault = driver.NetworkDefault
	// NetworkNone gives the sandbox only its own loopback interface.
	NetworkNone = driver.NetworkNone
	// NetworkHost gives the sandbox the host's network, explicitly.
	NetworkHost = driver.NetworkHost
)

// Status is a sandbox's state (Info.Status).
type Status = driver.Status

// The states a sandbox can be in.
const (
	StatusRunning = driver.StatusRunning
	StatusStopped = driver.StatusStopped
	StatusError   = driver.StatusError
)

// Provider is a sandbox backend, as local.New, modal.New and remote.New
// return, given to New in a Config. Package driver defines what one
// implements, for those who write one.
type Provider = driver.Provider
