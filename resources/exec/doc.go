// Package exec is the exec resource: it runs a command, without a shell unless
// told to use one, each time its vertex is checked and may need to act.
package exec
