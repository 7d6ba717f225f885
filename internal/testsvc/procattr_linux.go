package testsvc

import "syscall"

// serverProcAttr puts a server in its own process group, so a terminal's Ctrl-C
// reaches only the test binary (which then stops the server in order), and has the
// kernel send it SIGTERM if the test binary dies first, so a killed or panicking
// test run does not leave servers behind.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
