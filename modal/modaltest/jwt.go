package modaltest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Tokens are HS256 JWTs signed with a key of the server's own. Their exp is
// an integer, as the SDK's command-router client requires.

var errBadToken = errors.New("invalid token")

// claims are what the emulator puts in its tokens.
type claims struct {
	Exp    int64  `json:"exp"`
	Iat    int64  `json:"iat"`
	Sub    string `json:"sub,omitempty"`     // the token id
	TaskID string `json:"task_id,omitempty"` // router tokens
	Kind   string `json:"kind"`              // "auth" or "router"
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func (s *Server) mintJWT(c claims, ttl time.Duration) string {
	now := time.Now()
	c.Iat = now.Unix()
	// JWT times are whole seconds: round the expiry up, so that a token
	// lives at least ttl (truncating gave a 1 s token as little as a few
	// milliseconds, and a client that had just refreshed was refused).
	c.Exp = now.Add(ttl + time.Second - 1).Unix()
	payload, _ := json.Marshal(c)
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, s.jwtKey)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// parseJWT checks a token's signature, kind and expiry.
func (s *Server) parseJWT(tok, kind string) (*claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errBadToken
	}
	mac := hmac.New(sha256.New, s.jwtKey)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, errBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errBadToken
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Kind != kind {
		return nil, errBadToken
	}
	if time.Now().Unix() >= c.Exp {
		return nil, errors.New("token expired")
	}
	return &c, nil
}
