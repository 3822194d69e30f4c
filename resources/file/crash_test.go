package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	crashEnv   = "MGMT_FILE_CRASH_CHILD" // set: TestCrashChild writes in a loop under this directory
	crashSize  = 64 << 20
	crashBlock = 4096
)

// generation fills w with crashSize bytes of generation g: every block
// carries g and its own number, so a torn or shuffled file cannot pass for
// a whole one.
func generation(w io.Writer, g byte) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	block := make([]byte, crashBlock)
	for i := range crashSize / crashBlock {
		fillBlock(block, g, i)
		if _, err := bw.Write(block); err != nil {
			return err
		}
	}
	return bw.Flush()
}

var blankBlocks = map[byte][]byte{'A': bytes.Repeat([]byte{'A'}, crashBlock), 'B': bytes.Repeat([]byte{'B'}, crashBlock)}

func fillBlock(b []byte, g byte, i int) {
	blank, ok := blankBlocks[g]
	if !ok {
		blank = bytes.Repeat([]byte{g}, crashBlock)
	}
	copy(b, blank)
	copy(b, fmt.Sprintf("generation %c block %08d\n", g, i))
}

// wholeGeneration tells which generation the file at p holds entirely, or
// why it holds none.
func wholeGeneration(p string) (byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() != crashSize {
		return 0, fmt.Errorf("size %d, want %d", fi.Size(), crashSize)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	got, want := make([]byte, crashBlock), make([]byte, crashBlock)
	var g byte
	for i := range crashSize / crashBlock {
		if _, err := io.ReadFull(r, got); err != nil {
			return 0, err
		}
		if i == 0 {
			g = got[len("generation ")]
		}
		fillBlock(want, g, i)
		if !bytes.Equal(got, want) {
			return 0, fmt.Errorf("block %d is not generation %c's", i, g)
		}
	}
	return g, nil
}

// TestCrashChild is not a test: it is the process TestCrashSafety kills. It
// writes the two generations over the same path in turns until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run by TestCrashSafety")
	}
	fmt.Println("writing")
	for i := 0; ; i++ {
		src := filepath.Join(dir, "A")
		if i%2 == 0 {
			src = filepath.Join(dir, "B")
		}
		r := &File{Path: filepath.Join(dir, "target"), Source: src, Mode: "0600"}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.CheckApply(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashSafety kills a process with SIGKILL at random moments while it
// writes a 64 MiB file, many times: the path must always hold one
// generation entirely, and the next run must converge and clean up.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	for _, g := range []string{"A", "B"} {
		f, err := os.Create(filepath.Join(dir, g))
		must(t, err)
		must(t, generation(f, g[0]))
		must(t, f.Close())
	}
	target := filepath.Join(dir, "target")
	start := time.Now()
	apply(t, &File{Path: target, Source: filepath.Join(dir, "A"), Mode: "0600"})
	one := time.Since(start)
	t.Logf("one write of %d MiB takes %v", crashSize>>20, one)

	kills := 30
	if testing.Short() {
		kills = 5
	}
	seen := map[byte]int{}
	leftovers := 0
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.Contains(line, "writing") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child did not start writing: %q, %v", line, err)
		}
		// A random moment within the next two writes.
		time.Sleep(rand.N(2 * one))
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, want killed by SIGKILL", i, err)
		}
		g, err := wholeGeneration(target)
		if err != nil {
			t.Fatalf("kill %d: %s holds a partial file: %v", i, target, err)
		}
		seen[g]++
		entries, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range entries {
			if IsTemp(e.Name()) {
				leftovers++
			}
		}
	}
	t.Logf("%d kills: the path held generation A %d times, B %d times; %d temporary files were left",
		kills, seen['A'], seen['B'], leftovers)

	// The next run converges and leaves no temporary file behind. It is
	// this process, which swept dir at its first write: forget that, as a
	// new agent process would not know it.
	swept.Clear()
	for _, g := range []string{"B", "A"} {
		apply(t, &File{Path: target, Source: filepath.Join(dir, g), Mode: "0600"})
		if got, err := wholeGeneration(target); err != nil || got != g[0] {
			t.Fatalf("after the next run: generation %c, %v; want %s", got, err, g)
		}
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range entries {
		if IsTemp(e.Name()) {
			t.Errorf("temporary file %s left after a complete run", e.Name())
		}
	}
}
