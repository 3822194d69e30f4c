package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/quote"
	"github.com/spf13/cobra"
)

func statusCmd() *cobra.Command {
	var client clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status --seeds URL [--json]",
		Short: "Print the status of every host of the cluster: its deploy, its state, its failures",
		Long: `status prints one line per host that published its status: the state it
reports (converging, converged, failed, depooled, invalid), the deploy it runs,
how long ago its state last changed, how many resources failed, its mgmt
version. A host whose lease expired (stopped, or cut off for more than 10 s) is
shown as lost, with the last state it reported. Exit status 1: the cluster
could not be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(client.seeds) == 0 {
				return &usageError{"status: --seeds is required: the client URLs of the cluster"}
			}
			ctx, stop := signalContext(slog.New(slog.NewTextHandler(os.Stderr, nil)))
			defer stop()
			c, err := etcd.Connect(ctx, etcd.ClientConfig{
				Endpoints: client.seeds, TLS: client.tlsFiles(), Namespace: client.namespace,
			})
			if err != nil {
				if errors.Is(err, etcd.ErrConfig) {
					return err
				}
				return &failedError{err}
			}
			defer c.Close()
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			all, err := deploy.ReadStatus(rctx, c)
			if err != nil {
				return &failedError{err}
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			return printHosts(os.Stdout, all, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the records as a JSON array")
	client.define(cmd)
	return cmd
}

// printHosts writes a line per host.
func printHosts(w io.Writer, all []deploy.HostStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tDEPLOY\tCOMMIT\tCHANGED\tFAILED\tDRIFTS\tVERSION")
	for _, s := range all {
		state := s.State
		if s.State == deploy.StateLost {
			state = "lost (was " + s.LastState + ")"
		}
		dep := "-" // a graph file, or no deploy yet
		if s.Deploy != 0 {
			dep = fmt.Sprint(s.Deploy)
		}
		if s.Wanted != 0 && s.Wanted != s.Deploy {
			dep += fmt.Sprintf(" (wants %d)", s.Wanted)
		}
		commit := "-"
		if s.Commit != "" {
			commit = fmt.Sprintf("%.12s", s.Commit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Host, state, dep, commit, age(now.Sub(s.ChangedAt)), len(s.Failed), s.Drifts, s.Version)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range all { // the why, below the table
		if s.Error != "" {
			fmt.Fprintf(w, "%s: deploy %d: %s\n", s.Host, s.Wanted, quote.Escape(s.Error))
		}
		for _, f := range s.Failed {
			fmt.Fprintf(w, "%s: %s: %s\n", s.Host, f.Res, quote.Escape(f.Err))
		}
		if s.Held > 0 {
			fmt.Fprintf(w, "%s: %d resource(s) held back: they wait on a failed one\n", s.Host, s.Held)
		}
	}
	return nil
}

func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s ago"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}
