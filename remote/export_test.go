package remote

// SandboxOf returns p's handle on sandbox id without asking the server,
// for tests of calls that Get would refuse first.
func SandboxOf(p *Provider, id string) *Sandbox { return &Sandbox{p: p, id: id} }
