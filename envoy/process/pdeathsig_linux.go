package process

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill Envoy when the process that started it
// dies, however it dies: a test binary killed by its timeout leaves no
// Envoy behind holding ports.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
