//go:build !mgmt_gendocs

package main

import "github.com/spf13/cobra"

// gendocsCmd: none without the mgmt_gendocs tag (see gendocs.go).
func gendocsCmd() *cobra.Command { return nil }
