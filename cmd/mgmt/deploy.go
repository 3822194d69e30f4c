package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mgmtconfig/mgmt/agent"
	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/yamlgraph"
	"github.com/spf13/cobra"
)

// clientFlags are how a command reaches the cluster as a client; `mgmt run`
// and `mgmt deploy` share them.
type clientFlags struct {
	seeds     []string
	namespace string
	tls       etcd.TLSFiles
}

func (c *clientFlags) define(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&c.seeds, "seeds", nil, "client URLs of an etcd cluster to join (comma-separated)")
	f.StringVar(&c.namespace, "etcd-namespace", "", "key prefix in etcd (default /mgmt/)")
	f.StringVar(&c.tls.CA, "etcd-ca", "", "CA certificate for etcd client and peer TLS")
	f.StringVar(&c.tls.Cert, "etcd-cert", "", "this host's certificate for etcd TLS")
	f.StringVar(&c.tls.Key, "etcd-key", "", "this host's key for etcd TLS")
}

// tlsFiles is nil when no TLS flag was given.
func (c *clientFlags) tlsFiles() *etcd.TLSFiles {
	if c.tls == (etcd.TLSFiles{}) {
		return nil
	}
	return &c.tls
}

// failedError is a command that could not do its work (the cluster
// unreachable, say) though its input was good: exit status 1.
type failedError struct{ err error }

func (e *failedError) Error() string { return e.err.Error() }
func (e *failedError) Unwrap() error { return e.err }

type deployOpts struct {
	client   clientFlags
	file     string
	dir      string
	gitRepo  string
	gitRev   string
	message  string
	keep     int
	list     bool
	json     bool
	rollback bool
	rollout  rolloutFlags
}

func deployCmd() *cobra.Command {
	var o deployOpts
	cmd := &cobra.Command{
		Use:   "deploy (--file GRAPH.yaml [--dir DIR] | --git REPO | --list | --rollback [N] | --status | --resume | --abort) --seeds URL",
		Short: "Store a graph and its files in the cluster as the next deploy; list or roll back deploys",
		Long: `deploy validates a graph, bundles it with the local files it refers to (relative
source: paths) or with the whole tree under --dir, and stores it in etcd as the
next deploy. It prints the deploy's number on stdout; details go to stderr.
With --canary, --batch, --max-failures or --batch-timeout it rolls the deploy
out in stages, following the rollout to its end (exit 0 completed, 1 halted).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, on := range []bool{o.file != "" && o.gitRepo == "", o.gitRepo != "", o.list, o.rollback, o.rollout.status, o.rollout.resume, o.rollout.abort} {
				if on {
					modes++
				}
			}
			if modes != 1 {
				return &usageError{"deploy: give one of --file, --git, --list, --rollback, --status, --resume or --abort"}
			}
			staged, err := o.rollout.parse(cmd, o.file != "" || o.gitRepo != "")
			if err != nil {
				return err
			}
			if len(args) > 0 && !o.rollback {
				return &usageError{fmt.Sprintf("deploy: unexpected argument %q (only --rollback takes one: the deploy number)", args[0])}
			}
			if len(o.client.seeds) == 0 {
				return &usageError{"deploy: --seeds is required: the client URLs of the cluster to deploy to"}
			}
			ctx, stop := signalContext(slog.New(slog.NewTextHandler(os.Stderr, nil)))
			defer stop()
			switch {
			case o.rollout.status:
				return o.runStatus(ctx, os.Stdout)
			case o.rollout.resume:
				return o.runResume(ctx)
			case o.rollout.abort:
				return o.runAbort(ctx)
			case staged:
				return o.runRollout(ctx)
			case o.list:
				return o.runList(ctx, os.Stdout)
			case o.rollback:
				var n int64
				if len(args) == 1 {
					var err error
					if n, err = strconv.ParseInt(args[0], 10, 64); err != nil || n <= 0 {
						return &usageError{fmt.Sprintf("deploy --rollback %q: want a deploy number", args[0])}
					}
				}
				return o.runRollback(ctx, n)
			default:
				return o.runDeploy(ctx)
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "graph file (YAML); with --dir or --git, relative to it (default there: graph.yaml)")
	f.StringVar(&o.dir, "dir", "", "bundle the whole directory tree DIR, not only the files the graph refers to")
	f.StringVar(&o.gitRepo, "git", "", "take the graph and its files from the git repository REPO at --rev")
	f.StringVar(&o.gitRev, "rev", "HEAD", "with --git: the commit to deploy (a work tree's HEAD must be clean)")
	f.StringVarP(&o.message, "message", "m", "", "a note kept with the deploy")
	f.IntVar(&o.keep, "keep", deploy.DefaultKeep, "keep the last K deploys in the history; older ones are pruned")
	f.BoolVar(&o.list, "list", false, "print the history of deploys")
	f.BoolVar(&o.json, "json", false, "with --list or --status: print JSON")
	f.BoolVar(&o.rollback, "rollback", false, "deploy deploy N again as a new number (default: the one before the current)")
	o.rollout.define(cmd)
	o.client.define(cmd)
	return cmd
}

func (o *deployOpts) connect(ctx context.Context) (*etcd.Client, *deploy.Store, error) {
	c, err := etcd.Connect(ctx, etcd.ClientConfig{
		Endpoints: o.client.seeds, TLS: o.client.tlsFiles(), Namespace: o.client.namespace,
		RequestTimeout: 30 * time.Second,
	})
	if err != nil {
		if errors.Is(err, etcd.ErrConfig) {
			return nil, nil, err
		}
		return nil, nil, &failedError{err}
	}
	return c, deploy.NewStore(c), nil
}

// refer parses a graph file and lists the local files it refers to. A bad
// graph is an *agent.InvalidError naming its file, line and column.
func refer(graph string) ([]deploy.LocalFile, error) {
	yg, err := yamlgraph.ParseFile(graph)
	if err != nil {
		return nil, &agent.InvalidError{Err: err}
	}
	var out []deploy.LocalFile
	for _, l := range yg.Local {
		out = append(out, deploy.LocalFile{Path: l.Path, By: l.Pos + ": " + l.Res})
	}
	return out, nil
}

// bundle builds the deploy's bundle and checks it: its graph, unpacked, is
// parsed and compiled, so that what is validated is what is stored.
func (o *deployOpts) bundle(ctx context.Context, tmp string) ([]byte, *deploy.Git, error) {
	spec := deploy.BundleSpec{Graph: o.file}
	var git *deploy.Git
	switch {
	case o.gitRepo != "":
		graph, info, err := deploy.FromGit(ctx, deploy.GitSource{Repo: o.gitRepo, Rev: o.gitRev, File: o.file}, filepath.Join(tmp, "git"), refer)
		if err != nil {
			return nil, nil, err
		}
		spec.Graph, git = graph, info
	case o.dir != "":
		if o.file == "" {
			o.file = deploy.GraphName
		}
		spec.Graph, spec.Dir = filepath.Join(o.dir, o.file), o.dir
	}
	local, err := refer(spec.Graph)
	if err != nil {
		return nil, nil, err
	}
	spec.Local = local
	b, err := deploy.Bundle(spec)
	if err != nil {
		return nil, nil, err
	}
	unpacked := filepath.Join(tmp, "bundle")
	if err := deploy.Unpack(b, unpacked); err != nil {
		return nil, nil, fmt.Errorf("check the bundle: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if _, _, err := agent.Load(ctx, filepath.Join(unpacked, deploy.GraphName), log); err != nil {
		return nil, nil, fmt.Errorf("the bundled graph: %w", err)
	}
	return b, git, nil
}

func (o *deployOpts) runDeploy(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "mgmt-deploy-")
	if err != nil {
		return &failedError{err}
	}
	defer os.RemoveAll(tmp)
	b, git, err := o.bundle(ctx, tmp)
	if err != nil {
		return err // before anything is stored
	}
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := st.Put(ctx, b, deploy.PutOptions{Message: o.message, Git: git})
	if err != nil {
		return &failedError{err}
	}
	describe(os.Stderr, "deployed", m)
	fmt.Println(m.Number)
	return o.prune(ctx, st)
}

func (o *deployOpts) prune(ctx context.Context, st *deploy.Store) error {
	n, err := st.Prune(ctx, o.keep)
	if err != nil {
		return &failedError{fmt.Errorf("the deploy is stored, but: %w", err)}
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "pruned %d old deploys (keeping %d)\n", n, o.keep)
	}
	return nil
}

func describe(w io.Writer, what string, m deploy.Meta) {
	fmt.Fprintf(w, "%s %d: %s, %d bytes in %d chunks, by %s", what, m.Number, m.Hash, m.Size, m.Chunks, m.By)
	if m.Git != nil {
		fmt.Fprintf(w, ", git %.12s %q", m.Git.Commit, m.Git.Subject)
	}
	if m.RollbackOf != 0 {
		fmt.Fprintf(w, ", rollback of %d", m.RollbackOf)
	}
	if m.Message != "" {
		fmt.Fprintf(w, ": %s", m.Message)
	}
	fmt.Fprintln(w)
}

func (o *deployOpts) runRollback(ctx context.Context, n int64) error {
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := st.Rollback(ctx, n, deploy.PutOptions{Message: o.message})
	if err != nil {
		if errors.Is(err, deploy.ErrNotFound) {
			return &usageError{err.Error()}
		}
		return &failedError{err}
	}
	describe(os.Stderr, "deployed", m)
	fmt.Println(m.Number)
	return o.prune(ctx, st)
}

func (o *deployOpts) runList(ctx context.Context, w io.Writer) error {
	c, st, err := o.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	all, err := st.List(ctx)
	if err != nil {
		return &failedError{err}
	}
	var current int64
	if cur, err := st.Current(ctx); err == nil {
		current = cur.Number
	} else if !errors.Is(err, deploy.ErrNotFound) {
		return &failedError{err}
	}
	if o.json {
		out := struct {
			Current int64         `json:"current"`
			Deploys []deploy.Meta `json:"deploys"`
		}{current, all}
		if out.Deploys == nil {
			out.Deploys = []deploy.Meta{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tDEPLOY\tTIME\tBY\tHASH\tSIZE\tGIT\tMESSAGE")
	for _, m := range all {
		mark := ""
		if m.Number == current {
			mark = "*"
		}
		git := "-"
		if m.Git != nil {
			git = fmt.Sprintf("%.12s", m.Git.Commit)
		}
		msg := m.Message
		if m.Git != nil && msg == "" {
			msg = m.Git.Subject
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.19s\t%d\t%s\t%s\n", mark, m.Number, m.Time.Format(time.RFC3339), m.By,
			m.Hash, m.Size, git, strings.ReplaceAll(msg, "\n", " "))
	}
	return tw.Flush()
}
