package exec

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

func BenchmarkSplitArgs(b *testing.B) {
	const cmd = `rsync -a --delete "/srv/data dir/" 'backup host:/srv/backup' --exclude=\*.tmp`
	for b.Loop() {
		if _, err := SplitArgs(cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRun is the cost of one run of a trivial command: process group,
// pipes, output reading and the clean-up of the group.
func BenchmarkRun(b *testing.B) {
	x := &Exec{Cmd: "true", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := x.Validate(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := x.CheckApply(context.Background(), true); err != nil {
			b.Fatal(err)
		}
	}
}
