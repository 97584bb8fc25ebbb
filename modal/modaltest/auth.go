package modaltest

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Authentication, as Modal does it:
//
//   - every control-plane call carries the token pair (x-modal-token-id,
//     x-modal-token-secret); a missing or wrong pair is Unauthenticated;
//   - unary control-plane calls other than AuthTokenGet also carry the JWT
//     from AuthTokenGet (x-modal-auth-token), which must be valid and
//     unexpired; the Go SDK sends none on streams, so there it is checked
//     only when present;
//   - command-router calls carry "authorization: Bearer <jwt>" with a JWT
//     from TaskGetCommandRouterAccess or SandboxGetCommandRouterAccess, good
//     for one task only.

type routerClaimsKey struct{}

func (s *Server) authenticate(ctx context.Context, service, method string, stream bool) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch service {
	case ControlPlaneService:
		id, secret := firstMD(md, "x-modal-token-id"), firstMD(md, "x-modal-token-secret")
		if id == "" || secret == "" {
			return ctx, status.Error(codes.Unauthenticated, "Token missing. Could not authenticate client. Set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to the emulator's token pair.")
		}
		if subtle.ConstantTimeCompare([]byte(id), []byte(s.TokenID)) != 1 ||
			subtle.ConstantTimeCompare([]byte(secret), []byte(s.TokenSecret)) != 1 {
			return ctx, status.Error(codes.Unauthenticated, "Token validation failed: the token id or secret is not valid.")
		}
		if method == "AuthTokenGet" {
			return ctx, nil
		}
		tok := firstMD(md, "x-modal-auth-token")
		if tok == "" {
			if stream {
				return ctx, nil
			}
			return ctx, status.Error(codes.Unauthenticated, "missing x-modal-auth-token: call AuthTokenGet first")
		}
		if _, err := s.parseJWT(tok, "auth"); err != nil {
			return ctx, status.Errorf(codes.Unauthenticated, "x-modal-auth-token: %v", err)
		}
		return ctx, nil
	case RouterService:
		auth := firstMD(md, "authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || tok == "" {
			return ctx, status.Error(codes.Unauthenticated, "missing bearer token")
		}
		c, err := s.parseJWT(tok, "router")
		if err != nil {
			return ctx, status.Errorf(codes.Unauthenticated, "command router token: %v", err)
		}
		return context.WithValue(ctx, routerClaimsKey{}, c), nil
	}
	return ctx, nil
}

// authorizeTask checks that the router token of the call is for taskID.
func authorizeTask(ctx context.Context, taskID string) error {
	c, _ := ctx.Value(routerClaimsKey{}).(*claims)
	if c == nil || c.TaskID != taskID {
		return status.Errorf(codes.PermissionDenied, "the command router token is not valid for task %q", taskID)
	}
	return nil
}
