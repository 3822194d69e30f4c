package line

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
)

// TestMain fails the run if a Watch or loop left a goroutine behind; the
// shared watcher, which lives as long as the process, is started first.
func TestMain(m *testing.M) {
	if _, err := fswatch.Default(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	before := leakcheck.Take()
	code := m.Run()
	if code == 0 {
		if left := before.Left(5 * time.Second); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines leaked:\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}
