package mysqltest

import (
	"errors"
	"os/exec"
	"syscall"
)

// configureChild makes a child die with the test process (Pdeathsig, even on SIGKILL of the test) and puts it
// in its own process group, so a timeout kills mariadb-install-db's bootstrap server along with the script.
func configureChild(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if cmd.Cancel != nil { // only commands made by exec.CommandContext may have one
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
