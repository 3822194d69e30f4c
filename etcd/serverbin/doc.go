// Package serverbin holds, in a build with the mgmt_split_server tag, the
// mgmt-etcd program (cmd/mgmt-etcd) as bytes, so that the mgmt binary can
// run its etcd member as a child process without linking etcd's server.
// The Makefile builds etcd/serverbin/mgmt-etcd before mgmt.
package serverbin
