//go:build !linux

package testsvc

import "syscall"

// serverProcAttr puts a server in its own process group. Without Linux's
// parent-death signal, a killed test binary's servers live on until the next
// start sweeps them.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
