//go:build linux

package agentproto

import (
	"reflect"
	"syscall"
	"testing"
)

// The launcher takes what the host sets for an isolated agent, and
// nothing else: a start that asks for more starts the agent directly.
func TestNewLaunch(t *testing.T) {
	attr := &syscall.SysProcAttr{
		Setsid:                     true,
		Pdeathsig:                  syscall.SIGKILL,
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1000, Size: 2}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1000, Size: 2}},
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 1, Gid: 1, NoSetGroups: true},
		AmbientCaps:                []uintptr{21},
	}
	l, ok := NewLaunch(attr)
	if !ok {
		t.Fatalf("NewLaunch refused the host's own attributes: %+v", attr)
	}
	if got := l.SysProcAttr(); !reflect.DeepEqual(got, attr) {
		t.Errorf("the launcher would start the agent with %+v; want %+v", got, attr)
	}
	for name, change := range map[string]func(*syscall.SysProcAttr){
		"Setpgid":         func(a *syscall.SysProcAttr) { a.Setpgid = true },
		"Chroot":          func(a *syscall.SysProcAttr) { a.Chroot = "/srv" },
		"no Pdeathsig":    func(a *syscall.SysProcAttr) { a.Pdeathsig = 0 },
		"no Setsid":       func(a *syscall.SysProcAttr) { a.Setsid = false },
		"Unshareflags":    func(a *syscall.SysProcAttr) { a.Unshareflags = syscall.CLONE_NEWNET },
		"UseCgroupFD too": func(a *syscall.SysProcAttr) { a.UseCgroupFD, a.CgroupFD = true, 3 },
	} {
		a := *attr
		change(&a)
		if _, ok := NewLaunch(&a); ok {
			t.Errorf("%s: NewLaunch took attributes the launcher would drop", name)
		}
	}
}
