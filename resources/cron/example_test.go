package cron

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	_ "github.com/mgmtconfig/mgmt/resources/user"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// TestExample: examples/cron1.yaml is valid, and its cron comes after the
// user it runs as.
func TestExample(t *testing.T) {
	yg, err := yamlgraph.ParseFile("../../examples/cron1.yaml")
	must(t, err)
	g, err := engine.Compile(context.Background(), &yg.Decl, slog.New(slog.DiscardHandler))
	must(t, err)
	if !strings.Contains(g.String(), "user[backup] -> cron[backup]") {
		t.Errorf("no automatic edge from the user to the cron:\n%s", g)
	}
}
