//go:build !linux

package process

import "os/exec"

// setPdeathsig does nothing where the kernel cannot tie a child's life to
// its parent's: Stop is then the only way Envoy ends.
func setPdeathsig(*exec.Cmd) {}
