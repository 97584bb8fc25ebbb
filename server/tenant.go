package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// AdminTenant is the tenant name whose tokens see every sandbox (see
// Options.Tokens). Options.Token is an admin token.
const AdminTenant = "admin"

// caller is who sent a request, by its token.
type caller struct {
	tenant string
	admin  bool
}

type callerKey struct{}

// callerOf returns the request's caller; a context without one (a server
// without tokens) is an admin.
func callerOf(ctx context.Context) caller {
	if c, ok := ctx.Value(callerKey{}).(caller); ok {
		return c
	}
	return caller{admin: true}
}

// tokenEntry is one accepted token, by its hash.
type tokenEntry struct {
	hash   [32]byte
	tenant string
}

// tokenTable builds the server's tokens from Options. It panics on an
// empty token or tenant name: a configuration that would let anyone in.
func tokenTable(opts *Options) []tokenEntry {
	var out []tokenEntry
	add := func(tok, tenant string) {
		tok, tenant = strings.TrimSpace(tok), strings.TrimSpace(tenant)
		if tok == "" || tenant == "" {
			panic(fmt.Sprintf("server: Options.Tokens has an empty token or tenant name (tenant %q); every token needs both", tenant))
		}
		out = append(out, tokenEntry{hash: sha256.Sum256([]byte(tok)), tenant: tenant})
	}
	if opts.Token != "" {
		add(opts.Token, AdminTenant)
	}
	for tok, tenant := range opts.Tokens {
		add(tok, tenant)
	}
	return out
}

// authenticated reports whether the server requires a token.
func (s *Server) authenticated() bool { return len(s.tokens) > 0 }

// authorize returns the caller of a request that sent a valid bearer
// token (bearerToken says where it may be). Every token is compared, in
// constant time, whichever matches: the time taken says nothing about
// the tokens (the hashes make it independent of their lengths too).
func (s *Server) authorize(r *http.Request) (caller, bool) {
	if !s.authenticated() {
		return caller{admin: true}, true
	}
	tok, ok := bearerToken(r)
	if !ok {
		return caller{}, false
	}
	got := sha256.Sum256([]byte(tok))
	match := -1
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(got[:], s.tokens[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return caller{}, false
	}
	t := s.tokens[match].tenant
	return caller{tenant: t, admin: t == AdminTenant}, true
}

// ParseTokens reads a tokens file for Options.Tokens: one "tenant:token"
// per line (the token is everything after the first colon, spaces around
// both trimmed); blank lines and lines starting with # are skipped. A
// tenant may have several tokens; the tenant "admin" (AdminTenant) sees
// every sandbox. It refuses an empty tenant or token, a token given twice
// and a file without any.
func ParseTokens(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tenant, tok, ok := strings.Cut(line, ":")
		tenant, tok = strings.TrimSpace(tenant), strings.TrimSpace(tok)
		switch {
		case !ok || tenant == "" || tok == "":
			return nil, fmt.Errorf("tokens line %d: want \"tenant:token\" (a name, a colon, the token)", n)
		case out[tok] != "":
			return nil, fmt.Errorf("tokens line %d: this token is already given to tenant %q; give every tenant tokens of its own", n, out[tok])
		}
		out[tok] = tenant
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no tokens: want one \"tenant:token\" per line")
	}
	return out, nil
}

// notLocal says why a request to a server without a token is refused,
// or "" when it comes from this machine: a loopback peer, a loopback
// host name (a DNS-rebound name is not), and no web page of another site
// behind it (a page can POST to a loopback address).
func notLocal(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && !isLoopback(host) {
		return fmt.Sprintf("requests from %s", host)
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if !isLoopback(host) {
		return fmt.Sprintf("host %q, which is not this machine", r.Host)
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !isLoopback(u.Hostname()) {
			return fmt.Sprintf("requests from the web page %q", o)
		}
	}
	return ""
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
