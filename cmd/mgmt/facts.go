package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/mgmtconfig/mgmt/facts"
	"github.com/spf13/cobra"
)

func factsCmd() *cobra.Command {
	var hostname string
	var labelArgs []string
	cmd := &cobra.Command{
		Use:   "facts [--hostname H] [--label KEY=VALUE ...]",
		Short: "Print this host's facts as JSON: what graph templates see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			labels, err := parseLabelArgs(labelArgs)
			if err != nil {
				return err
			}
			f, err := facts.Gather(context.Background(), facts.Options{Hostname: hostname, Labels: labels, Version: version})
			if err != nil {
				return fmt.Errorf("facts: %w", err)
			}
			out, err := json.MarshalIndent(f, "", "  ")
			if err != nil {
				return fmt.Errorf("facts: %w", err)
			}
			_, err = fmt.Fprintf(os.Stdout, "%s\n", out)
			return err
		},
	}
	cmd.Flags().StringVar(&hostname, "hostname", "", "this host's name (default: the machine's)")
	addLabelFlag(cmd, &labelArgs)
	return cmd
}

// addLabelFlag adds --label, repeatable, to cmd. Each value is one
// KEY=VALUE kept whole (commas included); parseLabelArgs checks them.
func addLabelFlag(cmd *cobra.Command, args *[]string) {
	cmd.Flags().StringArrayVar(args, "label", nil, "a label of this host, KEY=VALUE (repeatable), e.g. --label role=web")
}

// parseLabelArgs parses --label values; a bad one is a usage error (exit 2).
func parseLabelArgs(args []string) (map[string]string, error) {
	labels, err := facts.ParseLabels(args)
	if err != nil {
		return nil, &usageError{"--label: " + err.Error()}
	}
	return labels, nil
}
