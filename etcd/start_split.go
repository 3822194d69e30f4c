//go:build mgmt_split_server

package etcd

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mgmtconfig/mgmt/etcd/memberconf"
	"github.com/mgmtconfig/mgmt/etcd/serverbin"
)

// startServer runs the mgmt-etcd program $MGMT_ETCD_SERVER names, or else
// the copy this binary carries, as a child process.
func startServer(ctx context.Context, cfg ServerConfig, mc memberconf.Config) (*Server, error) {
	bin := os.Getenv(ServerBinaryEnv)
	if bin == "" {
		var err error
		if bin, err = embeddedServer(); err != nil {
			return nil, err
		}
	}
	return startServerProcess(ctx, cfg, mc, bin)
}

var (
	embedOnce sync.Once
	embedFile *os.File // kept open for the life of the process
	embedPath string
	embedErr  error
)

// embeddedServer writes the mgmt-etcd program this binary carries into a
// sealed memory file, once per process, and returns a path that executes
// it. The file descriptor is close-on-exec: a child sees it only while its
// execve resolves /proc/self/fd/N.
func embeddedServer() (string, error) {
	embedOnce.Do(func() {
		fd, err := unix.MemfdCreate("mgmt-etcd", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			embedErr = fmt.Errorf("etcd server program: memfd_create: %w (set $%s to a mgmt-etcd binary)", err, ServerBinaryEnv)
			return
		}
		f := os.NewFile(uintptr(fd), "mgmt-etcd")
		if _, err := f.Write(serverbin.Binary); err != nil {
			f.Close()
			embedErr = fmt.Errorf("etcd server program: write memfd: %w", err)
			return
		}
		seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			f.Close()
			embedErr = fmt.Errorf("etcd server program: seal memfd: %w", err)
			return
		}
		embedFile = f
		embedPath = fmt.Sprintf("/proc/self/fd/%d", fd)
	})
	return embedPath, embedErr
}
