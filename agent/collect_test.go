package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/etcd"
	_ "github.com/mgmtconfig/mgmt/resources/file"
)

// An export whose value holds a second document (YAML after ---, or a
// second JSON value) is skipped whole, with a warning naming the host and
// the resource; the host's other exports are still collected.
func TestCollectedSecondDocumentSkipped(t *testing.T) {
	var logs bytes.Buffer
	r := &runner{log: slog.New(slog.NewTextHandler(&logs, nil))}
	snap := []etcd.Export{
		{Host: "h1", Kind: "file", Name: "good", Params: []byte("path: /x/good\ncontent: fine\n")},
		{Host: "h1", Kind: "file", Name: "two-yaml", Params: []byte("path: /x/a\ncontent: a\n---\npath: /x/b\ncontent: b\n")},
		{Host: "h2", Kind: "file", Name: "two-json", Params: []byte(`{"path": "/x/a", "content": "a"}{"path": "/x/b"}`)},
	}
	got := r.decodeCollected(snap, map[string]string{"file": "/srv/collected"})
	if len(got) != 1 || got[0].name != "good" {
		t.Fatalf("collected %+v, want only the good export", got)
	}
	for _, want := range []string{
		`host=h1 res=file[two-yaml] err="etcd:h1:3:1: file[two-yaml]: a second YAML document starts here`,
		`host=h2 res=file[two-json] err="etcd:h2:1:`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning with %q in:\n%s", want, logs.String())
		}
	}
}
