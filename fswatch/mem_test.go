package fswatch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkSubscribeMemory reports the heap one file subscription keeps:
// 10,000 files, 100 to a directory (the layout of make bench's file
// scenarios), each watched on its own.
func BenchmarkSubscribeMemory(b *testing.B) {
	root := b.TempDir()
	var paths []string
	for d := range 100 {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			p := filepath.Join(dir, fmt.Sprintf("f%d", f))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				b.Fatal(err)
			}
			paths = append(paths, p)
		}
	}
	for b.Loop() {
		w, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		cancels := make([]func(), len(paths))
		for i, p := range paths {
			if cancels[i], err = w.Watch(p, func() {}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc-before)/float64(len(paths)), "B/sub")
		for _, c := range cancels {
			c()
		}
		w.mu.Lock()
		left := len(w.interest) + len(w.dirs)
		w.mu.Unlock()
		if left != 0 {
			b.Fatalf("%d paths or directories left after every cancel", left)
		}
		w.Close()
	}
}
