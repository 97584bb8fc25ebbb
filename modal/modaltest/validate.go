package modaltest

import (
	"net"
	"regexp"
	"strings"
	"sync"

	pb "github.com/modal-labs/modal-client/go/proto/modal_proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server-side checks of a sandbox definition that Modal makes and the SDK
// leaves to it (the SDK validates the rest before sending).

// clouds are the cloud providers Modal accepts by name.
var clouds = map[string]bool{"aws": true, "gcp": true, "oci": true, "azure": true, "auto": true}

// regionPattern accepts Modal's broad regions ("us", "eu", "us-east") and
// cloud regions ("us-east-1", "europe-west4"); the emulator records them.
// Both patterns are compiled on first use, not at init: this package is
// linked into the compute CLI (compute modal emulate), and compiling them
// at init would cost every command's start about half a millisecond
// (issue 16).
var regionPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(us|eu|uk|ap|jp|ca|me|sa|af|mx|au|in|kr|asia|europe|northamerica|southamerica|australia)(-[a-z]+)*(-?[0-9]+)?$`)
})

// domainPattern is a host name, optionally with a leading "*." wildcard.
var domainPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$`)
})

func validateDefinition(def *pb.Sandbox) error {
	if c := def.GetCloudProviderStr(); c != "" && !clouds[strings.ToLower(c)] {
		return status.Errorf(codes.InvalidArgument, "Invalid cloud provider: %q (want one of aws, gcp, oci, azure, auto)", c)
	}
	for _, r := range def.GetSchedulerPlacement().GetRegions() {
		if !regionPattern().MatchString(strings.ToLower(r)) {
			return status.Errorf(codes.InvalidArgument, "Invalid region: %q", r)
		}
	}
	return validateNetworkAccess(def.GetNetworkAccess())
}

func validateNetworkAccess(na *pb.NetworkAccess) error {
	for _, c := range na.GetAllowedCidrs() {
		_, ipnet, err := net.ParseCIDR(c)
		family := "IPv4"
		if strings.Contains(c, ":") {
			family = "IPv6"
		}
		if err != nil || (family == "IPv4") != (ipnet.IP.To4() != nil) {
			return status.Errorf(codes.InvalidArgument, "Invalid CIDR (outbound %s): %s", family, c)
		}
	}
	for _, d := range na.GetAllowedDomains() {
		if !domainPattern().MatchString(d) {
			return status.Errorf(codes.InvalidArgument, "Invalid domain (outbound allowlist): %s", d)
		}
	}
	return nil
}
