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

	"github.com/mgmtconfig/mgmt/engine"
)

const (
	crashEnv      = "MGMT_FILE_CRASH_CHILD"       // set: TestCrashChild writes in a loop under this directory
	crashGroupEnv = "MGMT_FILE_CRASH_GROUP_CHILD" // set: TestCrashChildGroup does, as a group
	crashSize     = 64 << 20
	crashBlock    = 4096
	// A group's batch: crashMembers files of crashMemberSize bytes, as much
	// in all as the one file of TestCrashSafety.
	crashMembers    = 16
	crashMemberSize = crashSize / crashMembers
)

// generation fills w with size bytes of generation g: every block carries g
// and its own number, so a torn or shuffled file cannot pass for a whole
// one.
func generation(w io.Writer, g byte, size int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	block := make([]byte, crashBlock)
	for i := range size / crashBlock {
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

// wholeGeneration tells which generation of size bytes the file at p holds
// entirely, or why it holds none.
func wholeGeneration(p string, size int) (byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() != int64(size) {
		return 0, fmt.Errorf("size %d, want %d", fi.Size(), size)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	got, want := make([]byte, crashBlock), make([]byte, crashBlock)
	var g byte
	for i := range size / crashBlock {
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

// TestCrashChildGroup is not a test either: it is the process
// TestCrashSafetyGroup kills. It writes the two generations over a group's
// files in turns until killed, every file of a turn in one batch.
func TestCrashChildGroup(t *testing.T) {
	dir := os.Getenv(crashGroupEnv)
	if dir == "" {
		t.Skip("only run by TestCrashSafetyGroup")
	}
	fmt.Println("writing")
	for i := 0; ; i++ {
		g := crashGroup(t, dir, "A")
		if i%2 == 0 {
			g = crashGroup(t, dir, "B")
		}
		if _, err := g.CheckApply(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
}

// crashGroup is the group of the crashMembers targets with the content of
// generation g.
func crashGroup(t *testing.T, dir, g string) engine.Res {
	var fs []*File
	for m := range crashMembers {
		fs = append(fs, &File{Path: filepath.Join(dir, "tree", fmt.Sprintf("target%02d", m)), Source: filepath.Join(dir, g), Mode: "0600"})
	}
	res := groupOf(t, fs...)
	if err := res.Validate(); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestCrashSafety kills a process with SIGKILL at random moments while it
// writes a 64 MiB file, many times: the path must always hold one
// generation entirely, and the next run must converge and clean up.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	writeGenerations(t, dir, crashSize)
	target := filepath.Join(dir, "target")
	start := time.Now()
	apply(t, &File{Path: target, Source: filepath.Join(dir, "A"), Mode: "0600"})
	one := time.Since(start)
	t.Logf("one write of %d MiB takes %v", crashSize>>20, one)

	seen := map[byte]int{}
	leftovers := killAtRandom(t, "TestCrashChild", crashEnv+"="+dir, dir, one, func(kill int) {
		g, err := wholeGeneration(target, crashSize)
		if err != nil {
			t.Fatalf("kill %d: %s holds a partial file: %v", kill, target, err)
		}
		seen[g]++
	})
	t.Logf("the path held generation A %d times, B %d times; %d temporary files were left", seen['A'], seen['B'], leftovers)

	// The next run converges and leaves no temporary file behind. It is
	// this process, which swept dir at its first write: forget that, as a
	// new agent process would not know it.
	swept.Clear()
	for _, g := range []string{"B", "A"} {
		apply(t, &File{Path: target, Source: filepath.Join(dir, g), Mode: "0600"})
		if got, err := wholeGeneration(target, crashSize); err != nil || got != g[0] {
			t.Fatalf("after the next run: generation %c, %v; want %s", got, err, g)
		}
	}
	noTemporaryFile(t, dir)
}

// TestCrashSafetyGroup is TestCrashSafety for a group's batch: killed at
// any moment of a batch (writing the temporary files, syncing them,
// renaming them, syncing the directory), each member holds one generation
// entirely (members may differ: each is old or new), and the next run
// converges and cleans up.
func TestCrashSafetyGroup(t *testing.T) {
	dir := t.TempDir()
	writeGenerations(t, dir, crashMemberSize)
	must(t, os.Mkdir(filepath.Join(dir, "tree"), 0o755))
	start := time.Now()
	if _, err := crashGroup(t, dir, "A").CheckApply(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	one := time.Since(start)
	t.Logf("one batch of %d files of %d MiB takes %v", crashMembers, crashMemberSize>>20, one)

	seen := map[byte]int{}
	mixed := 0
	leftovers := killAtRandom(t, "TestCrashChildGroup", crashGroupEnv+"="+dir, filepath.Join(dir, "tree"), one, func(kill int) {
		gens := map[byte]bool{}
		for m := range crashMembers {
			p := filepath.Join(dir, "tree", fmt.Sprintf("target%02d", m))
			g, err := wholeGeneration(p, crashMemberSize)
			if err != nil {
				t.Fatalf("kill %d: %s holds a partial file: %v", kill, p, err)
			}
			seen[g]++
			gens[g] = true
		}
		if len(gens) > 1 {
			mixed++
		}
	})
	t.Logf("members held generation A %d times, B %d times; %d kills left the batch half renamed; %d temporary files were left",
		seen['A'], seen['B'], mixed, leftovers)

	swept.Clear()
	for _, g := range []string{"B", "A"} {
		if _, err := crashGroup(t, dir, g).CheckApply(t.Context(), true); err != nil {
			t.Fatal(err)
		}
		for m := range crashMembers {
			p := filepath.Join(dir, "tree", fmt.Sprintf("target%02d", m))
			if got, err := wholeGeneration(p, crashMemberSize); err != nil || got != g[0] {
				t.Fatalf("after the next run: %s holds generation %c, %v; want %s", p, got, err, g)
			}
		}
	}
	noTemporaryFile(t, filepath.Join(dir, "tree"))
}

// writeGenerations writes the sources A and B, of size bytes each, in dir.
func writeGenerations(t *testing.T, dir string, size int) {
	for _, g := range []string{"A", "B"} {
		f, err := os.Create(filepath.Join(dir, g))
		must(t, err)
		must(t, generation(f, g[0], size))
		must(t, f.Close())
	}
}

// killAtRandom starts the test child (with env) again and again and kills
// it with SIGKILL at a random moment within its next two writes (one: how
// long a write takes); check runs after each kill. It returns how many
// temporary files the kills left in dir, counted after each.
func killAtRandom(t *testing.T, child, env, dir string, one time.Duration, check func(kill int)) int {
	kills := 30
	if testing.Short() {
		kills = 5
	}
	leftovers := 0
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), env)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.Contains(line, "writing") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child did not start writing: %q, %v; its stderr: %s", line, err, stderr.Bytes())
		}
		time.Sleep(rand.N(2 * one))
		must(t, cmd.Process.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, want killed by SIGKILL; its stderr: %s", i, err, stderr.Bytes())
		}
		check(i)
		entries, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range entries {
			if IsTemp(e.Name()) {
				leftovers++
			}
		}
	}
	t.Logf("%d kills", kills)
	return leftovers
}

func noTemporaryFile(t *testing.T, dir string) {
	entries, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range entries {
		if IsTemp(e.Name()) {
			t.Errorf("temporary file %s left after a complete run", e.Name())
		}
	}
}
