// Command compare runs the same work with mgmt and with the tools users
// would otherwise pick (Puppet, Ansible, CFEngine, PackageKit's pkcon,
// apt-get, a shell floor), alternating them run by run, and writes the
// medians, spreads and ratios, with the machine and the tools' versions, to
// docs/benchmarks.md.
//
//	go run ./bench/cmd/compare [-quick] [-mgmt ./mgmt] [-out docs/benchmarks.md]
//
// It installs the peers it compares against from Debian's packages when
// they are missing. Package work happens only inside a disposable test host
// (test/testhost) against the local repository of tiny packages
// (test/testrepo); everything else happens under a temporary directory that
// is removed at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The tools, as the table names them.
const (
	toolMgmt     = "mgmt"
	toolPuppet   = "puppet"
	toolAnsible  = "ansible"
	toolCFEngine = "cfengine"
)

// plan is how much of each scenario a run does.
type plan struct {
	name        string // "quick" or "full", for the notes of what a plan leaves out
	startupRuns int
	execSleep   string
	execRuns    int
	// fileSizes: at each size mgmt and the shell floor run, and the peers
	// listed (Ansible needs a module process per file, Puppet about as
	// long per file: they run at the smaller sizes only).
	fileSizes  []fileSize
	fileRuns   int
	fileBudget time.Duration
	pkgRuns    int
	pkgBudget  time.Duration
	// pkgPeers, when set, are the only tools of the package scenario
	// besides mgmt.
	pkgPeers     []string
	driftFiles   int
	driftSamples int
	svcSamples   int
	pkgSamples   int
	exportSizes  []int
	exportRuns   int
	scaleSizes   []int // noop and file vertices
	scaleRuns    int
}

type fileSize struct {
	n     int
	peers []string
}

var (
	quickPlan = plan{
		name:        "quick",
		startupRuns: 3,
		execSleep:   "0.5", execRuns: 1,
		fileSizes: []fileSize{{200, []string{toolPuppet, toolCFEngine}}}, fileRuns: 1,
		pkgRuns: 1, pkgPeers: []string{"pkcon", "apt-get", "dpkg -s (floor)"},
		driftFiles: 100, driftSamples: 20, svcSamples: 5, pkgSamples: 2,
		exportSizes: []int{3}, exportRuns: 1,
		scaleSizes: []int{1000, 10000}, scaleRuns: 1,
	}
	fullPlan = plan{
		name:        "full",
		startupRuns: 15,
		execSleep:   "2", execRuns: 3,
		fileSizes: []fileSize{
			{50, []string{toolPuppet, toolAnsible, toolCFEngine}},
			{1000, []string{toolPuppet, toolCFEngine}},
			{10000, []string{toolCFEngine}},
		},
		fileRuns: 3, fileBudget: 60 * time.Second,
		pkgRuns: 3, pkgBudget: 60 * time.Second,
		driftFiles: 1000, driftSamples: 100, svcSamples: 30, pkgSamples: 10,
		exportSizes: []int{3, 10}, exportRuns: 3,
		scaleSizes: []int{1000, 10000, 100000}, scaleRuns: 3,
	}
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "timeit" {
		os.Exit(timeit(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	quick := flag.Bool("quick", false, "the quick subset: fewer runs, smaller sizes")
	mgmtBin := flag.String("mgmt", "./mgmt", "the mgmt binary to measure (make build)")
	out := flag.String("out", "", "write the report to this file (docs/benchmarks.md); empty: standard output only")
	madeBy := flag.String("made-by", "", "the command that ran this program, for the report (e.g. \"make bench\")")
	only := flag.String("only", "", "run only these scenarios (comma-separated: "+strings.Join(scenarioIDs, ",")+")")
	noInstall := flag.Bool("no-install", false, "do not install missing peers")
	installOnly := flag.Bool("install-peers", false, "install the missing peers and exit, 1 if one cannot be installed (make bench, before the peers' tests)")
	keep := flag.Bool("keep", false, "keep the work directory (manifests, graphs, logs)")
	onlyTools := flag.String("tools", "", "run only these tools (comma-separated table names, e.g. mgmt,pkcon); for debugging")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *installOnly {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "compare: must run as root to install the peers")
			return 2
		}
		failed := installPeers(ctx, log)
		for pkg, err := range failed {
			fmt.Fprintf(os.Stderr, "compare: %s: %v\n", pkg, err)
		}
		if len(failed) > 0 {
			return 1
		}
		return 0
	}

	p := fullPlan
	if *quick {
		p = quickPlan
	}
	var want []string
	if *only != "" {
		want = strings.Split(*only, ",")
		for _, id := range want {
			if !slices.Contains(scenarioIDs, id) {
				fmt.Fprintf(os.Stderr, "compare: unknown scenario %q (have %s)\n", id, strings.Join(scenarioIDs, ", "))
				return 2
			}
		}
	}
	mgmt, err := filepath.Abs(*mgmtBin)
	if err == nil {
		_, err = os.Stat(mgmt)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: the mgmt binary: %v (run make build)\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "compare: must run as root (peers, test hosts)")
		return 2
	}
	work, err := os.MkdirTemp("", "mgmt-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		return 1
	}
	if *keep {
		log.Info("work directory kept", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}

	started, loadStart := time.Now(), loadAvg()
	b := newBench(ctx, log, work, mgmt, p)
	if !*noInstall {
		for pkg, err := range installPeers(ctx, log) {
			b.installErr = append(b.installErr, fmt.Sprintf("%s: %v", pkg, err))
		}
		slices.Sort(b.installErr)
	}
	b.findTools(ctx)

	var scens []*scenario
	for _, id := range scenarioIDs {
		if len(want) > 0 && !slices.Contains(want, id) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		for _, s := range b.scenarios(ctx, id) {
			if *onlyTools != "" {
				names := strings.Split(*onlyTools, ",")
				s.tools = slices.DeleteFunc(s.tools, func(t *tool) bool { return !slices.Contains(names, t.name) })
			}
			log.Info("scenario", "id", s.id, "title", s.title)
			s.run(ctx, log)
			scens = append(scens, s)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "compare: interrupted; no report written")
		return 1
	}
	var rows []row
	for _, s := range scens {
		rows = append(rows, s.rows()...)
	}
	mach := describeMachine(work)
	mach.LoadStart, mach.LoadEnd = loadStart, loadAvg()
	command := *madeBy
	if command == "" {
		command = "go run ./bench/cmd/compare"
	}
	r := &report{
		command:  command,
		argv:     "go run ./bench/cmd/compare " + shellJoin(os.Args[1:]),
		started:  started,
		took:     time.Since(started),
		machine:  mach,
		versions: b.versions(ctx),
		install:  b.installErr,
		rows:     rows,
		scens:    scens,
		howRun:   b.howRun(),
	}
	md := r.markdown()
	fmt.Println(table(rows))
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			return 1
		}
		log.Info("report written", "file", *out)
	}
	return 0
}

// errPending marks a scenario or tool whose mgmt side has not landed yet.
var errPending = errors.New("not in ./mgmt yet")

// shellJoin quotes args for a POSIX shell where they need it.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
