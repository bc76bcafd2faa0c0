# make test: install what the tests need and is missing, then vet and test.
# make run:  run the service (same as: go run ./cmd/alertrca).
# make bench: the benchmarks of BENCHMARKS.md.

GO ?= go
TEST_TOOLS := prometheus promtool prometheus-alertmanager amtool

.PHONY: test deps vet run bench

test: deps vet
	$(GO) test -race ./...

vet:
	$(GO) vet ./...

# Prometheus, promtool, Alertmanager and amtool come from the OS packages.
# As root they are installed when missing; otherwise the command to run is
# printed, and the tests that need them skip locally (they fail when CI=true).
deps:
	@missing=""; \
	for b in $(TEST_TOOLS); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing prometheus prometheus-alertmanager (missing:$$missing)"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	else \
		echo "missing:$$missing"; \
		echo "install them with: sudo apt-get install -y prometheus prometheus-alertmanager"; \
	fi

run:
	$(GO) run ./cmd/alertrca

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3s ./receiver/
