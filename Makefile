# payhsm — two commands do all set-up on a fresh Debian machine:
#   make run    install what is missing, build, start the daemon in --dev mode under ./data
#   make test   install what is missing, build, lint, run every test
# and one more explores beyond the tests:
#   make fuzz   fuzz every parser (FUZZTIME each; not part of make test)
#   make fleet  a local 3-node fleet on a 3-member etcd cluster, in the foreground (dev only)
SHELL := /bin/bash
GO ?= go
BIN := bin/payhsm
DATA ?= ./data
HTTP_ADDR ?= 127.0.0.1:8080
HOST_ADDR ?= 127.0.0.1:1500
OPS_ADDR ?= 127.0.0.1:9100
SOFTHSM_MODULE := /usr/lib/softhsm/libsofthsm2.so
# VERSION is what `payhsm version`, /version and payhsm_build_info report:
# git describe of the checkout (a tag, commits since it, the commit, -dirty
# for uncommitted changes), stamped into the binary.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X payhsm/internal/version.stamp=$(VERSION))
# make fuzz knobs. FUZZTIME is how long each fuzz target runs, as -fuzztime
# takes it: a count of executions ("2000x", the default: a pass over all
# targets took about 13 minutes on the 2-core reference machine; "100000x" for
# a longer hunt). Prefer counts to durations: a duration -fuzztime races Go's
# fuzz coordinator (golang/go#75804, unfixed in Go 1.26) and fails with a bare
# "context deadline exceeded". FUZZPKGS narrows the packages, e.g.
# make fuzz FUZZPKGS=./keystore/... FUZZTIME=20000x
FUZZTIME ?= 2000x
FUZZPKGS ?= ./...

.PHONY: all build run test unit e2e fuzz bench bench-ci deps vet fmt clean generate lint race etcd install fleet

all: build

# deps installs the system packages payhsm needs (SoftHSM2 for the dev/test
# token, OpenSSL for the interop tests, socat for the serial-console test) when they are absent.
deps:
	@missing=""; \
	[ -f $(SOFTHSM_MODULE) ] || missing="$$missing softhsm2"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go 1.26 is required (https://go.dev/dl/)"; exit 1; }

build: deps
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/payhsm

# install puts the appliance on this machine for production (docs/production.md):
# the binary, the systemd unit, the payhsm system user (sysusers.d) and its
# directories (tmpfiles.d), the documentation and the example files. As root
# without DESTDIR it also creates the user and the directories and reloads
# systemd; it enables nothing. PREFIX=/usr/local (the unit's paths follow it);
# DESTDIR stages the files under another root (packaging).
PREFIX ?= /usr/local
DESTDIR ?=
DOCDIR := $(PREFIX)/share/doc/payhsm
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/payhsm
	install -d -m 0755 $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed -e 's|/usr/local/bin/payhsm|$(PREFIX)/bin/payhsm|g' -e 's|/usr/local/share/doc/payhsm|$(DOCDIR)|g' \
		systemd/payhsm.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/payhsm.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/payhsm.service
	install -D -m 0644 systemd/payhsm.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/payhsm.conf
	install -D -m 0644 systemd/payhsm.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/payhsm.conf
	install -d -m 0755 $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/examples/* $(DESTDIR)$(DOCDIR)/examples/
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(PREFIX)/lib/sysusers.d/payhsm.conf && \
		systemd-tmpfiles --create $(PREFIX)/lib/tmpfiles.d/payhsm.conf && \
		{ systemctl daemon-reload 2>/dev/null || true; } && \
		echo "installed; next: $(DOCDIR)/production.md (token, PIN, credentials, configuration, ceremony init, systemctl enable --now payhsm)"; \
	else \
		echo "installed under $(DESTDIR)$(PREFIX); as root on the target: systemd-sysusers; systemd-tmpfiles --create; systemctl daemon-reload"; \
	fi

run: build
	./$(BIN) serve --dev --data-dir $(DATA) --http-addr $(HTTP_ADDR) --host-addr $(HOST_ADDR) --ops-addr $(OPS_ADDR)

# fleet runs a local fleet for development (README "A local fleet",
# tools/fleet): a 3-member etcd cluster (client ports 23791-23793) and 3
# payhsm nodes hsm-1..3 on loopback (HTTP 8181-8183, host 1601-1603, ops
# 9201-9203), each with its own SoftHSM2 token and data directory under
# FLEET_DATA, joined through payhsm ceremony join, in the foreground until
# Ctrl-C. DEV ONLY: its custodians' passphrases are fixed and printed.
FLEET_DATA ?= ./fleet-data
fleet: build etcd
	CGO_ENABLED=0 $(GO) build -o bin/fleet ./tools/fleet
	./bin/fleet -bin $(BIN) -etcd $(ETCD) -data $(FLEET_DATA)

# test runs the unit tests, every fuzz target on its seed corpus (go test runs
# those as ordinary tests), and the end-to-end tests against the real daemon.
# Real fuzzing is make fuzz, outside this target.
test: build lint race etcd
	PAYHSM_ETCD=$(ETCD) $(GO) test -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory bench-ci

# bench-ci runs the operations layer's primitive benchmarks briefly, each
# beside its crypto ceiling (BenchmarkPrimitives, -benchmem, cpu-ns/op), so
# that every CI log shows the ratios and the allocations per operation. A
# shared CI machine makes the numbers indicative; docs/performance.md has
# the measured ones and how they were taken.
bench-ci:
	$(GO) test -run '^$$' -bench 'Primitives' -benchmem -benchtime 2000x ./ops

vet:
	$(GO) vet ./...

# Linters, pinned; built from source through the Go module proxy into .tools/
# the first time (a few minutes on a 2-core machine), then reused. The path
# names the Go release too: golangci-lint must be built by a Go at least as
# new as the code it checks, so a Go upgrade rebuilds it.
GOLANGCI_LINT_VERSION := v2.15.0
TOOLS := $(CURDIR)/.tools
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)-$(shell $(GO) env GOVERSION 2>/dev/null)/golangci-lint

$(GOLANGCI_LINT):
	@command -v $(GO) >/dev/null || { echo "Go 1.26 is required (https://go.dev/dl/)"; exit 1; }
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# etcd, for the key store's etcd engine: its tests run a real 3-member
# cluster (internal/etcdtest), and a fleet shares one. Built from the etcd
# server's Go module (tools/etcdserver, its own module, so that etcd's
# dependencies stay out of payhsm's go.mod) into .tools/ the first time
# (about a minute on a 2-core machine), then reused: the same etcd as the
# client payhsm links (go.etcd.io/etcd/client/v3), checksummed by that
# module's go.sum, on every machine. Debian's etcd-server package is older
# (3.4 on bookworm) and starts a system etcd on install.
ETCD_VERSION := $(shell awk '$$1 == "require" && $$2 == "go.etcd.io/etcd/server/v3" {print $$3; exit} $$1 == "go.etcd.io/etcd/server/v3" {print $$2; exit}' tools/etcdserver/go.mod)
ETCD := $(TOOLS)/etcd-$(ETCD_VERSION)/etcd

$(ETCD): tools/etcdserver/go.mod tools/etcdserver/go.sum tools/etcdserver/main.go
	@command -v $(GO) >/dev/null || { echo "Go 1.26 is required (https://go.dev/dl/)"; exit 1; }
	cd tools/etcdserver && CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -o $@ .

etcd: $(ETCD)

# lint enforces the habits: gofmt, go vet, a tidy go.mod, golangci-lint
# (.golangci.yml: errcheck, staticcheck, gosec, ineffassign, unused) and the
# package layering (test/layering). Every check runs; lint fails if any did.
lint: $(GOLANGCI_LINT)
	@fail=""; \
	echo "lint: gofmt -l (tracked Go files)"; \
	files=$$(git ls-files '*.go') && [ -n "$$files" ] && out=$$(gofmt -l $$files) && [ -z "$$out" ] || \
		{ echo "gofmt: not formatted (make fmt):"; echo "$$out"; fail="$$fail gofmt"; }; \
	echo "lint: go vet ./..."; $(GO) vet ./... || fail="$$fail vet"; \
	echo "lint: go mod tidy -diff"; $(GO) mod tidy -diff || fail="$$fail tidy"; \
	echo "lint: golangci-lint run"; $(GOLANGCI_LINT) run ./... || fail="$$fail golangci-lint"; \
	echo "lint: import rules (test/layering)"; $(GO) test -count=1 ./test/layering || fail="$$fail layering"; \
	if [ -n "$$fail" ]; then echo "lint FAILED:$$fail"; exit 1; fi; echo "lint: ok"

# race runs the packages with shared state under the race detector: the
# keystore, the audit trail's writer, both protocol servers (and SigV4's key cache), and the
# working-key cache's tests in ops (the whole ops suite under -race would take
# minutes). The generated shape packages hold no shared state.
RACE_PKGS := ./keystore/... ./audit/... ./protocol/hostcmd/... ./protocol/awsapi ./protocol/awsapi/sigv4 ./daemon
RACE_OPS_TESTS := WorkingKey|KeyCache|AuditOutbox
race: etcd
	PAYHSM_ETCD=$(ETCD) CGO_ENABLED=1 $(GO) test -race -count=1 $(RACE_PKGS)
	CGO_ENABLED=1 $(GO) test -race -count=1 -run '$(RACE_OPS_TESTS)' ./ops/...

# fuzz fuzzes every fuzz target in FUZZPKGS in turn, FUZZTIME each. The output
# goes to a fresh temporary log per run (its path is printed); a failure shows
# the end of the log and leaves the crasher under the package's testdata/fuzz.
fuzz:
	@set -e; log=$$(mktemp -t payhsm-fuzz.XXXXXX.log); echo "fuzz log: $$log"; \
	for pkg in $$($(GO) list $(FUZZPKGS)); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))" | tee -a "$$log"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >>"$$log" 2>&1 || { tail -n 60 "$$log"; echo "FAIL: $$pkg $$t; full log: $$log"; exit 1; }; \
		done; \
	done; echo "fuzz: every target passed; log: $$log"

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

generate:
	$(GO) generate ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
