//go:build linux && amd64

package agentbin

import _ "embed"

//go:embed compute-agent.linux-amd64
var program []byte
