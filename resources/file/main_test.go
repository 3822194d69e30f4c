package file

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/fswatch"
)

// TestMain fails the run if goroutines are left behind: every Watch and
// every loop the tests start must have ended. The shared watcher, which
// lives as long as the process, is started first so that its goroutines
// count as already there.
func TestMain(m *testing.M) {
	if _, err := fswatch.Default(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		end := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(end) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "%d goroutines leaked:\n%s\n", n-before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}
