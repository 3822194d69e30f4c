// Command mgmt is the configuration-management agent: `mgmt run --file
// graph.yaml` keeps a machine in the state the graph describes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/agent"
	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/logjournal"
	"github.com/mgmtconfig/mgmt/quote"
	_ "github.com/mgmtconfig/mgmt/resources/all"
	"github.com/mgmtconfig/mgmt/yamlgraph"
	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // resources failed, or the run could not start (etcd, the metrics address)
	exitInvalid = 2 // bad input: nothing applied
	// exitChanges, with --detailed-exitcodes only: the run succeeded and
	// changed something or, with --noop, would have.
	exitChanges = 4
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := &cobra.Command{
		Use:           "mgmt",
		Short:         "An event-driven, parallel configuration-management agent",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), validateCmd(), factsCmd(), deployCmd(), statusCmd())
	root.AddCommand(remoteRunCmd())
	if c := gendocsCmd(); c != nil {
		root.AddCommand(c)
	}
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	// Messages quote the text they take from a graph (quote.String);
	// escaping the whole message too keeps any that did not from
	// reordering or hiding what the terminal shows.
	fmt.Fprintln(os.Stderr, "mgmt:", quote.Escape(err.Error()))
	return exitCode(err)
}

// exitCode: 2 for input to fix (a bad flag or graph), 1 for a run that
// failed or could not start although its input was valid.
func exitCode(err error) int {
	var inv *agent.InvalidError
	var usage *usageError
	var re *engine.RunError
	var se *agent.StartError
	var failed *failedError
	var ch *changesError
	switch {
	case errors.As(err, &ch):
		return exitChanges
	case errors.As(err, &inv), errors.As(err, &usage):
		return exitInvalid
	case errors.As(err, &re), errors.As(err, &se), errors.As(err, &failed):
		return exitFailed
	default:
		return exitInvalid // cobra's own flag and argument errors
	}
}

// changesError ends a successful run with --detailed-exitcodes that
// changed something, or would have.
type changesError struct {
	n    int
	noop bool
}

func (e *changesError) Error() string {
	if e.noop {
		return fmt.Sprintf("%d resource(s) would change (--detailed-exitcodes: exit status %d)", e.n, exitChanges)
	}
	return fmt.Sprintf("%d resource(s) changed (--detailed-exitcodes: exit status %d)", e.n, exitChanges)
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(logjournal.Stderr(&slog.HandlerOptions{Level: l})), nil
}

func runCmd() *cobra.Command {
	var cfg agent.Config
	var convergedTimeout int
	var noWatch bool
	var logLevel string
	var client clientFlags
	var cpuProfile string
	var promListen string
	var labelArgs []string
	var detailed bool
	var rem remoteFlags
	cmd := &cobra.Command{
		Use:   "run (--file GRAPH.yaml | --from-cluster [--seeds URL])",
		Short: "Run a graph: apply it, then keep it applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			// A run that ends before agent.Run still replaces the report,
			// so that no one reads an earlier run's as this one's.
			started, ran := time.Now(), false
			defer func() {
				if err != nil && !ran && cfg.Report != "" {
					rerr := err
					if exitCode(err) == exitInvalid {
						rerr = &agent.InvalidError{Err: err}
					}
					if werr := agent.WriteFailedReport(cfg, started, rerr); werr != nil {
						fmt.Fprintln(os.Stderr, "mgmt: report:", werr)
					}
				}
			}()
			switch {
			case cfg.FromCluster && cfg.File != "":
				return &usageError{"run: --file and --from-cluster: give one: --from-cluster runs the deploys stored in the cluster"}
			case !cfg.FromCluster && cfg.File == "":
				return &usageError{"run: --file (or --from-cluster) is required"}
			}
			if rem.wanted() { // on other hosts, over SSH: remote.go
				ran = true
				return rem.run(cmd, cfg, convergedTimeout, logLevel, labelArgs, client)
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if cfg.Labels, err = parseLabelArgs(labelArgs); err != nil {
				return err
			}
			if cfg.Hostname == "" {
				if cfg.Hostname, err = os.Hostname(); err != nil {
					return &agent.StartError{Err: fmt.Errorf("hostname: %w", err)}
				}
			}
			cfg.Logger = log
			cfg.Version = version
			cfg.Cluster.Seeds, cfg.Cluster.Namespace = client.seeds, client.namespace
			cfg.Cluster.TLS = client.tlsFiles()
			cfg.Watch = !noWatch
			cfg.ConvergedTimeout = -1
			if convergedTimeout >= 0 {
				cfg.ConvergedTimeout = time.Duration(convergedTimeout) * time.Second
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return &usageError{fmt.Sprintf("--cpu-profile: %v", err)}
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return &agent.StartError{Err: fmt.Errorf("cpu profile: %w", err)}
				}
				defer pprof.StopCPUProfile()
			}
			cfg.MetricsListen = promListen
			ctx, stop := signalContext(log)
			defer stop()
			cfg.Reload = hangups(ctx)
			cfg.Out = os.Stderr
			var tally agent.Tally
			cfg.Tally = &tally
			ran = true
			if err := agent.Run(ctx, cfg); err != nil || !detailed {
				return err
			}
			if n := tally.Changed + tally.Pending; n > 0 {
				return &changesError{n: n, noop: cfg.Noop}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfg.File, "file", "f", "", "graph file (YAML)")
	f.BoolVar(&cfg.FromCluster, "from-cluster", false, "run the deploys meant for this host from the cluster (see mgmt deploy); the last one is kept under --prefix")
	f.IntVar(&convergedTimeout, "converged-timeout", -1, "exit once the graph has been converged for this many seconds (-1: run forever)")
	f.BoolVar(&cfg.Noop, "noop", false, "report what would change, change nothing")
	f.BoolVar(&noWatch, "no-watch", false, "do not reload the graph when its file changes")
	f.BoolVar(&detailed, "detailed-exitcodes", false, "exit 4 when the run changed something or, with --noop, would have (0: nothing to do, 1: failed, 2: invalid input)")
	f.StringVar(&cfg.Graphviz, "graphviz", "", "write the compiled graph as DOT to this file")
	f.StringVar(&cfg.GraphvizFilter, "graphviz-filter", "", "render the DOT file to FILE.png with this Graphviz program (e.g. dot)")
	f.StringVar(&cfg.Hostname, "hostname", "", "this host's name (default: the machine's)")
	addLabelFlag(cmd, &labelArgs)
	f.StringVar(&cfg.Prefix, "prefix", "/var/lib/mgmt", "directory for the agent's working state")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.Report, "report", "", "at exit, write a JSON summary of the run to this file")
	f.StringVar(&promListen, "prometheus-listen", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9233 (default: none)")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the run to this file (for debugging)")
	f.MarkHidden("cpu-profile")
	cc := &cfg.Cluster
	f.BoolVar(&cc.NoServer, "no-server", false, "run no embedded etcd server: be a client of --seeds only")
	f.StringSliceVar(&cc.ClientURLs, "client-urls", nil, "where the embedded etcd server listens for clients (default http://127.0.0.1:2379)")
	f.StringSliceVar(&cc.ServerURLs, "server-urls", nil, "where the embedded etcd server listens for peers (default http://127.0.0.1:2380)")
	f.StringSliceVar(&cc.AdvertiseClientURLs, "advertise-client-urls", nil, "client URLs other hosts reach this server at (default: --client-urls)")
	f.StringSliceVar(&cc.AdvertiseServerURLs, "advertise-server-urls", nil, "peer URLs other members reach this server at (default: --server-urls)")
	f.IntVar(&cc.IdealClusterSize, "ideal-cluster-size", 0, "let the agents choose up to N of them to run etcd members, replacing members that die (0: off)")
	client.define(cmd)
	rem.define(cmd)
	return cmd
}

func validateCmd() *cobra.Command {
	var file, hostname string
	var labelArgs []string
	cmd := &cobra.Command{
		Use:   "validate --file GRAPH.yaml [--hostname H] [--label KEY=VALUE ...]",
		Short: "Check a graph without running it, for every host or as one host sees it (exit 0: valid, 2: invalid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return &usageError{"validate: --file is required"}
			}
			labels, err := parseLabelArgs(labelArgs)
			if err != nil {
				return err
			}
			ctx := context.Background()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if hostname == "" && len(labelArgs) == 0 {
				yg, g, err := agent.Load(ctx, file, log)
				if err != nil {
					return err
				}
				fmt.Printf("%s: valid: %d resources, %d edges\n", quote.Escape(file), g.NumVertices(), g.NumEdges())
				if n := yg.Selection.Templates; n > 0 {
					fmt.Printf("%d values with templates: checked against every fact name; check their rendered values with --hostname\n", n)
				}
				return nil
			}
			host, err := agent.HostData(ctx, agent.Config{Hostname: hostname, Labels: labels, Version: version})
			if err != nil {
				return err
			}
			yg, g, err := agent.LoadFor(ctx, file, host, log)
			if err != nil {
				return err
			}
			printHostView(os.Stdout, file, host.Hostname, yg, g)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "graph file (YAML)")
	cmd.Flags().StringVar(&hostname, "hostname", "", "check the graph as this host sees it (with --label: default the machine's name)")
	addLabelFlag(cmd, &labelArgs)
	return cmd
}

// printHostView says what a graph is on one host: the resources kept,
// those left out and the edges dropped, a line each.
func printHostView(w io.Writer, file, host string, yg *yamlgraph.Graph, g *engine.Graph) {
	fmt.Fprintf(w, "%s: valid for host %s: %d resources, %d edges\n", file, host, g.NumVertices(), g.NumEdges())
	for _, v := range yg.Vertices {
		fmt.Fprintf(w, "resource %s (%s)\n", v, v.Source)
	}
	for _, l := range yg.Selection.Left {
		fmt.Fprintf(w, "left out %s (%s): %s\n", l.Res, l.Source, l.Why)
	}
	for _, d := range yg.Selection.Dropped {
		name := ""
		if d.Name != "" {
			name = fmt.Sprintf(" %q", d.Name)
		}
		fmt.Fprintf(w, "dropped edge%s %s -> %s (%s): %s\n", name, d.From, d.To, d.Source, d.Why)
	}
}

// hangups delivers SIGHUP: the conventional "read your configuration
// again" for a daemon.
func hangups(ctx context.Context) <-chan struct{} {
	reload := make(chan struct{}, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	return reload
}

// signalContext ends on SIGINT or SIGTERM; a second signal exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s, ok := <-sig
		if !ok {
			return
		}
		log.Info("stopping", "signal", s.String())
		cancel()
		if s, ok = <-sig; ok {
			log.Warn("second signal: exiting now", "signal", s.String())
			os.Exit(exitFailed)
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}
