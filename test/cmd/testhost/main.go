// Command testhost boots, enters and stops disposable test hosts by hand,
// for debugging what the test/testhost package does in tests.
//
//	go run ./test/cmd/testhost up [-name h1] [-netns NS] [-repo DIR | -testrepo] [-size 512m]
//	go run ./test/cmd/testhost exec h1 -- systemctl status
//	go run ./test/cmd/testhost addr h1
//	go run ./test/cmd/testhost mem h1
//	go run ./test/cmd/testhost list
//	go run ./test/cmd/testhost down h1
//	go run ./test/cmd/testhost repo DIR
//
// Hosts started by up keep running after the command exits; their state
// lives in $TMPDIR/mgmt-testhost-cli/NAME until down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

const usage = `usage: testhost COMMAND [ARGS]

  up [-name NAME] [-netns NS] [-repo DIR | -testrepo] [-size SIZE] [-log-level LEVEL]
        boot a host that keeps running after this command exits
  exec NAME [--] CMD [ARGS...]
        run a command inside (stdin, stdout and stderr attached)
  addr NAME     print the host's system bus address (for busctl --address, godbus)
  mem NAME      print the host's memory and tmpfs use
  list          list the hosts started by up
  down NAME     stop a host and remove its state
  repo DIR      build the default test apt repository into DIR
`

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, logger, os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testhost:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// stateRoot holds one state directory per host started by up.
func stateRoot() string { return filepath.Join(os.TempDir(), "mgmt-testhost-cli") }

func run(ctx context.Context, logger *slog.Logger, cmd string, args []string) (int, error) {
	switch cmd {
	case "up":
		return 0, up(ctx, logger, args)
	case "exec":
		if len(args) < 2 {
			return 2, errors.New("usage: exec NAME [--] CMD [ARGS...]")
		}
		argv := args[1:]
		if argv[0] == "--" {
			argv = argv[1:]
		}
		return execIn(ctx, logger, args[0], argv)
	case "addr", "mem", "down":
		if len(args) != 1 {
			return 2, fmt.Errorf("usage: %s NAME", cmd)
		}
		return 0, withHost(logger, cmd, args[0])
	case "list":
		return 0, list(logger)
	case "repo":
		if len(args) != 1 {
			return 2, errors.New("usage: repo DIR")
		}
		if err := os.MkdirAll(args[0], 0o755); err != nil {
			return 1, err
		}
		r, err := testrepo.Build(ctx, args[0], testrepo.Default())
		if err != nil {
			return 1, err
		}
		fmt.Printf("built %d packages in %s\n", len(r.Packages), r.Dir)
		return 0, nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2, fmt.Errorf("unknown command %q", cmd)
	}
}

func up(ctx context.Context, logger *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	name := fs.String("name", "testhost", "hostname, and the name to use with exec and down")
	netns := fs.String("netns", "", "join this named network namespace (ip netns add NAME) instead of a new empty one")
	repo := fs.String("repo", "", "use this local apt repository (see repo) as the host's only apt source")
	withTestRepo := fs.Bool("testrepo", false, "build the default test repository and use it (like -repo)")
	size := fs.String("size", "", "size of the tmpfs holding the host's writes (default 512m)")
	level := fs.String("log-level", "", "systemd's log level (default info)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := filepath.Join(stateRoot(), *name)
	if err := os.MkdirAll(stateRoot(), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("host %s: %w (down it first)", *name, err)
	}
	if *withTestRepo {
		*repo = filepath.Join(dir, "repo")
		if err := os.Mkdir(*repo, 0o755); err != nil {
			return err
		}
		if _, err := testrepo.Build(ctx, *repo, testrepo.Default()); err != nil {
			os.RemoveAll(dir)
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h, err := testhost.Start(ctx, testhost.Options{
		Name: *name, NetNS: *netns, AptRepo: *repo, TmpfsSize: *size, LogLevel: *level,
		Dir: dir, Detach: true, Logger: logger,
	})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	fmt.Printf("host %s: PID 1 is %d, booted in %v\n", h.Name(), h.PID(), h.BootDuration().Round(time.Millisecond))
	fmt.Printf("DBUS_SYSTEM_BUS_ADDRESS=%s\n", h.SystemBusAddress())
	fmt.Printf("console: %s\n", filepath.Join(dir, "console.log"))
	return nil
}

func attach(logger *slog.Logger, name string) (*testhost.Host, error) {
	return testhost.Attach(filepath.Join(stateRoot(), name), logger)
}

func execIn(ctx context.Context, logger *slog.Logger, name string, argv []string) (int, error) {
	h, err := attach(logger, name)
	if err != nil {
		return 1, err
	}
	cmd := h.Command(ctx, argv...)
	cmd.Env = append(cmd.Env, "TERM="+os.Getenv("TERM"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func withHost(logger *slog.Logger, cmd, name string) error {
	dir := filepath.Join(stateRoot(), name)
	h, err := attach(logger, name)
	if cmd == "down" {
		if h == nil {
			return err
		}
		if errors.Is(err, testhost.ErrGone) {
			logger.Warn("host was already gone; removing what it left", "host", name)
		}
		if err := h.Stop(); err != nil {
			return err
		}
		return os.RemoveAll(dir)
	}
	if err != nil {
		return err
	}
	switch cmd {
	case "addr":
		fmt.Println(h.SystemBusAddress())
	case "mem":
		m, err := h.Memory()
		if err != nil {
			return err
		}
		fmt.Printf("host %s: %v\n", name, m)
	}
	return nil
}

func list(logger *slog.Logger) error {
	ents, err := os.ReadDir(stateRoot())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, e := range ents {
		h, err := testhost.Attach(filepath.Join(stateRoot(), e.Name()), quiet)
		switch {
		case errors.Is(err, testhost.ErrGone):
			fmt.Printf("%-16s gone (run down to clean up)\n", e.Name())
		case err != nil:
			fmt.Printf("%-16s %v\n", e.Name(), err)
		default:
			fmt.Printf("%-16s PID 1 %d  %s\n", e.Name(), h.PID(), h.SystemBusAddress())
		}
	}
	return nil
}
