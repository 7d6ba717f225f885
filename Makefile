# spine-go: `make test` and `make demo` are the two commands that matter.
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
# Throwaway PostgreSQL data directories go to tmpfs when it has room (2 GiB;
# each test package runs its own server): CREATE DATABASE per test is ~25x
# faster there than on a slow disk. Elsewhere they stay in $TMPDIR.
export SPINE_TESTSVC_TMPDIR ?= $(shell [ -w /dev/shm ] && [ "$$(df -Pk /dev/shm | awk 'NR==2 {print $$4}')" -ge 2097152 ] 2>/dev/null && echo /dev/shm)

.PHONY: all build test vet demo deps bench bench-submit bench-phase3 bench-sidecar chaos-phase2 fmt clean

all: build

build:
	$(GO) build -o bin/spine-migrate ./cmd/spine-migrate

deps:
	@scripts/ensure-deps.sh

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# Every package with the race detector: the suites are I/O bound, so it
# costs little here. CI=true makes a service that cannot start fail, not skip.
test: deps vet
	$(GO) test -race -count=1 -timeout 15m ./...

demo: deps
	$(GO) run ./internal/demo

bench: bench-submit bench-phase3 bench-sidecar

bench-submit: deps
	$(GO) run ./bench/submitrate

bench-phase3: deps
	bench/phase3copy.sh

bench-sidecar: deps
	bench/sidecar.sh

chaos-phase2: deps
	testdata/phase2/chaos.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
