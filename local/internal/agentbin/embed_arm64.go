//go:build linux && arm64

package agentbin

import _ "embed"

//go:embed compute-agent.linux-arm64
var program []byte
