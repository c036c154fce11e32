# payhsm — two commands do all set-up on a fresh Debian machine:
#   make run    install what is missing, build, start the daemon in --dev mode under ./data
#   make test   install what is missing, build, run every test
SHELL := /bin/bash
GO ?= go
BIN := bin/payhsm
DATA ?= ./data
HTTP_ADDR ?= 127.0.0.1:8080
HOST_ADDR ?= 127.0.0.1:1500
SOFTHSM_MODULE := /usr/lib/softhsm/libsofthsm2.so
# Count-based, not a duration: a duration -fuzztime races Go's fuzz coordinator
# (golang/go#75804, unfixed in Go 1.26) and fails with a bare "context deadline exceeded".
FUZZTIME ?= 2000x

.PHONY: all build run test unit e2e fuzz bench deps vet fmt clean generate

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
	CGO_ENABLED=1 $(GO) build -trimpath -o $(BIN) ./cmd/payhsm

run: build
	./$(BIN) serve --dev --data-dir $(DATA) --http-addr $(HTTP_ADDR) --host-addr $(HOST_ADDR)

# test runs unit tests, the end-to-end tests against the real daemon, and a short fuzz pass on every parser.
test: build vet
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

vet:
	$(GO) vet ./...

# fuzz runs every fuzz target briefly (FUZZTIME executions each).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/payhsm-fuzz.log 2>&1 || { cat /tmp/payhsm-fuzz.log; exit 1; }; \
		done; \
	done

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

generate:
	$(GO) generate ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
