// Package skip skips a test whose need this machine lacks, or fails it where
// the suite must not pass without it (MGMT_REQUIRE_TESTHOSTS=1, as in CI).
package skip

import (
	"fmt"
	"os"
	"testing"
)

// Env is the environment variable that turns OrFail's skips into failures.
const Env = "MGMT_REQUIRE_TESTHOSTS"

// Required reports whether a missing need must fail the test (Env is 1).
func Required() bool { return os.Getenv(Env) == "1" }

// OrFail skips the test with the message, or fails it (Fatal) when
// Required. The message should name what is missing and what installs it
// ("the dot command (test/setup-deps.sh installs graphviz)").
func OrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("%s (%s=1: a missing need fails the test)", msg, Env)
		return
	}
	tb.Skip(msg)
}
