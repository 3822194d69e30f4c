# mgmt: `make` builds ./mgmt; `make run` runs an example; `make test` runs
# every test, installing what they need first.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# The race detector slows the suite several times over; CI runs with it.
RACE     ?= -race
TESTTIME ?= 30m

.PHONY: all build gendocs-bin run deb install test fixtures test-unit deps vet fuzz peers bench bench-quick clean

all: build

# mgmt is built with the mgmt_split_server tag: it does not link etcd's
# server (whose package inits slowed every `mgmt --version` and one-shot
# run) but carries mgmt-etcd (cmd/mgmt-etcd), built first into
# etcd/serverbin/, and runs it as a child process when it needs its etcd
# member (docs/cluster.md). A plain `go build ./cmd/mgmt` runs the member
# in-process instead; both work the same.
SPLIT_TAGS  := -tags mgmt_split_server
SERVER_BIN  := etcd/serverbin/mgmt-etcd
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(SERVER_BIN) ./cmd/mgmt-etcd
	$(GO) build -trimpath $(SPLIT_TAGS) -ldflags '$(LDFLAGS)' -o mgmt ./cmd/mgmt

# The man pages come from a build of the same source with the mgmt_gendocs
# tag (its generator stays out of the binary users run: cmd/mgmt/gendocs.go).
GENDOCS_BIN := .cache/mgmt-gendocs
gendocs-bin:
	$(GO) build -tags mgmt_gendocs -o $(GENDOCS_BIN) ./cmd/mgmt

run: build
	./mgmt run --file examples/hello.yaml --converged-timeout=3 --graphviz=/tmp/mgmt-hello.dot

# make deb: mgmt_VERSION_ARCH.deb, built with dpkg-deb (packaging/debian/):
# the binary (PIE, full RELRO: what Debian's hardening asks of binaries),
# mgmt.service, completions, man pages, /etc/mgmt/graph.yaml.
DEB_VERSION ?= $(shell packaging/version.sh)
DEB_OUT     ?= .
DEB_LDFLAGS := $(LDFLAGS) -X main.version=$(DEB_VERSION) -linkmode=external -extldflags '-Wl,-z,relro,-z,now'
deb: gendocs-bin
	$(GO) build -trimpath -buildmode=pie -ldflags "$(DEB_LDFLAGS)" -o $(SERVER_BIN) ./cmd/mgmt-etcd
	$(GO) build -trimpath -buildmode=pie $(SPLIT_TAGS) -ldflags "$(DEB_LDFLAGS)" -o mgmt.deb-bin ./cmd/mgmt
	GENDOCS=$(GENDOCS_BIN) packaging/debian/build.sh mgmt.deb-bin '$(DEB_VERSION)' $(DEB_OUT)
	rm -f mgmt.deb-bin

# make install [PREFIX=/usr/local] [DESTDIR=]: the same files without a
# package (packaging/install.sh); then systemctl daemon-reload and enable.
PREFIX  ?= /usr/local
DESTDIR ?=
install: build gendocs-bin
	GENDOCS=$(GENDOCS_BIN) PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' packaging/install.sh ./mgmt

# Debian packages the suite needs (systemd, D-Bus, PackageKit, Graphviz...),
# installed only when missing.
deps:
	bash test/setup-deps.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags peers ./bench/desired/

# Debian's etcd 3.4 server, unpacked (not installed) for the tests of
# agents against an older external cluster.
ETCD34 := $(CURDIR)/.cache/etcd-server/usr/bin/etcd
$(ETCD34):
	mkdir -p .cache/etcd-deb
	cd .cache/etcd-deb && (apt-get download etcd-server || (apt-get update -q && apt-get download etcd-server))
	dpkg -x .cache/etcd-deb/etcd-server_*.deb .cache/etcd-server
	test -x $@

fixtures: $(ETCD34)

# make test runs every fuzz target's seeds and committed crashers
# (testdata/fuzz) as plain tests, the same inputs on every run; exploring new
# inputs is make fuzz, whose outcome differs from run to run and so is no
# gate for a landing (CI once failed on an input it found that day).
test: deps fixtures vet build
	MGMT_TEST_ETCD_BINARY=$(ETCD34) $(GO) test $(RACE) -count=1 -timeout $(TESTTIME) ./...
	# the packages whose build the split tag changes, as ./mgmt is built
	$(GO) vet $(SPLIT_TAGS) ./etcd/... ./cmd/...
	MGMT_TEST_ETCD_BINARY=$(ETCD34) $(GO) test $(RACE) $(SPLIT_TAGS) -count=1 -timeout $(TESTTIME) ./etcd/ ./agent/
	# the man page generator, built only with its tag
	$(GO) vet -tags mgmt_gendocs ./cmd/mgmt/
	$(GO) test -tags mgmt_gendocs -count=1 -run '^TestGendocs' ./cmd/mgmt/
	# what the race detector's larger frames cannot show: an idle vertex's stack
	$(GO) test -count=1 -run '^TestIdleVertexStack$$' ./engine/

# Each fuzz target for FUZZTIME executions (go test fuzzes one target at a
# time). A count, not a duration: with a duration, Go 1.26's coordinator can
# report "context deadline exceeded" as a failure when the time runs out
# under load (go.dev/issue/75804; no input is at fault). A target may give
# its own count as pkg:Target:N (msg: once seen at 40 executions a second
# under load). A crash is written to the package's
# testdata/fuzz/FuzzXxx/: commit it and it becomes a regression test of
# every later `go test`.
FUZZTIME ?= 20000x
FUZZ     := ./yamlgraph:FuzzParse \
	./resources/file:FuzzValidate \
	./resources/exec:FuzzValidate ./resources/exec:FuzzSplitArgs \
	./resources/user:FuzzValidate ./resources/group:FuzzValidate ./resources/sshkey:FuzzValidate \
	./resources/line:FuzzValidate ./resources/sysctl:FuzzValidate \
	./resources/hostname:FuzzValidate ./resources/mount:FuzzValidate \
	./resources/msg:FuzzValidate:1000x ./resources/cron:FuzzValidate ./resources/kv:FuzzValidate
fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; rest=$${t#*:}; target=$${rest%%:*}; n=$(FUZZTIME); \
		case $$rest in *:*) n=$${rest#*:};; esac; \
		echo "fuzz $$pkg $$target for $$n"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $$n "$$pkg"; \
	done

# Unit tests only: no test hosts, no installs.
test-unit:
	$(GO) test -count=1 -short ./...

# make bench: the peers' tests (below), the Go benchmarks of every package, then the side-by-side
# comparison with Puppet, Ansible, CFEngine, pkcon and apt-get
# (bench/cmd/compare, which installs the peers when missing), which writes
# docs/benchmarks.md. make bench-quick: a subset of both, in under 2 minutes.
COMPARE := $(GO) run ./bench/cmd/compare -mgmt ./mgmt -out docs/benchmarks.md

# peers: installs Puppet, Ansible and CFEngine when missing, then runs the
# tests that need them (built only with -tags peers: plain `go test ./...`
# neither runs nor skips them), which fail if a peer is missing.
peers:
	$(GO) run ./bench/cmd/compare -install-peers
	$(GO) test -tags peers -count=1 -run '^TestFilesPeers$$' -v ./bench/desired/

# A failing Go benchmark fails make bench, after the compare step has run
# (the pipe into tee alone would hide it: its status is tee's).
bench: deps build peers
	mkdir -p .cache
	{ $(GO) test -run '^$$' -bench . -benchmem -benchtime 3x -timeout 60m ./... 2>&1; echo $$? > .cache/bench.status; } | tee bench.out
	$(COMPARE) -made-by 'make bench'
	@s=$$(cat .cache/bench.status); if [ "$$s" != 0 ]; then echo "make bench: the Go benchmarks failed (exit status $$s; see bench.out)" >&2; exit 1; fi

bench-quick: deps build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -short ./engine/ ./pgraph/ | tee bench.out
	$(COMPARE) -quick -made-by 'make bench-quick'

clean:
	rm -f mgmt bench.out mgmt.deb-bin mgmt_*.deb $(SERVER_BIN)
