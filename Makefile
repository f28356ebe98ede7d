# webhookd: everyday commands. `make help` lists them.

# go from PATH, else the usual install location. gofmt is taken from the same toolchain, so that
# lint formats exactly as the compiler's release does.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt

SERVICES := bash scripts/services.sh
FUZZTIME ?= 60s
FUZZ_TARGETS := FuzzRenderJSON FuzzRenderXML FuzzRenderForm
IMAGE ?= webhookd

.PHONY: help services run test test-short bench build lint fuzz docker

help:
	@echo "make run         start RabbitMQ and MariaDB, migrate, run the worker and the API, print a portal link"
	@echo "make test        start the services, check the alert rules, run every test with -race, then the fault tests"
	@echo "make test-short  run the tests that need no servers"
	@echo "make bench       start the services, run ./bench"
	@echo "make build       build bin/webhookd"
	@echo "make lint        gofmt and go vet"
	@echo "make fuzz        fuzz each formatter target for FUZZTIME (default $(FUZZTIME))"
	@echo "make docker      build the $(IMAGE) image from docker/Dockerfile"

services:
	@$(SERVICES)

# The local demo: the worker and `webhookd api` side by side, and a portal link for account 1
# (scripts/run.sh; it lets the worker post to loopback and gives the API a development key).
run: services build
	bin/webhookd migrate
	@bash scripts/run.sh

# The fault tests (./faults, build tag faults) stop and restart RabbitMQ and MariaDB, so they
# run after the others, one at a time.
# The alert rules are checked and unit-tested with promtool (Debian's prometheus package, which
# services.sh installs) before the Go tests, which also check the dashboard's expressions.
test: services
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -race -tags faults -p 1 -count=1 -timeout 15m ./faults/

test-short:
	$(GO) test -short ./...

bench: services
	$(GO) run ./bench

build:
	$(GO) build -o bin/webhookd .

lint:
	@unformatted="$$($(GOFMT) -l .)" || exit 1; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...

# go test -fuzz takes one target in one package at a time, and passes quietly when no target
# matches: a missing target is an error here.
fuzz:
	@set -e; for target in $(FUZZ_TARGETS); do \
		$(GO) test -list "^$$target\$$" ./formatter | grep -qx "$$target" || \
			{ echo "fuzz: no $$target in ./formatter"; exit 1; }; \
		echo "fuzzing $$target for $(FUZZTIME)"; \
		$(GO) test ./formatter -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
	done

docker:
	docker build -f docker/Dockerfile -t $(IMAGE) .
