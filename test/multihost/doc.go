// Package multihost runs mgmt agents on several hosts at once: the
// exported-resource demo on test hosts over a bridge, and benchmarks of
// many agents exchanging exports on one machine.
package multihost
