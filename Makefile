# scenepay: two commands on a fresh machine.
#   make run   the gateway on the embedded default plus a small emulated fleet
#   make test  gofmt, go vet, and every test with the race detector
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go
BIN := bin
RUN_DIR ?= var/run
TEST_TIMEOUT ?= 20m

.PHONY: all build run test vet fmt-check check-deploy bench bench-core bench-journal fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/gateway ./gateway/cmd/gateway
	$(GO) build -o $(BIN)/emulator ./emulator/cmd/emulator
	$(GO) build -o $(BIN)/settlement ./settlement/cmd/settlement

# make run: gateway (embedded MQTT broker, data in $(RUN_DIR)) and the demo
# fleet. Ctrl-C reaches the emulator (the gateway runs in its own session),
# which prints its summary and audit; then the gateway is stopped cleanly.
# Ports: MQTT 127.0.0.1:11883, HTTP 127.0.0.1:18080 (override with
# SCENEPAY_MQTT_LISTEN / SCENEPAY_HTTP_LISTEN).
run: build
	@mkdir -p $(RUN_DIR)
	@trap ':' INT TERM; \
	setsid ./$(BIN)/gateway -data-dir $(RUN_DIR) & gw=$$!; \
	setsid ./$(BIN)/settlement -data-dir $(RUN_DIR) -tick 2s & st=$$!; \
	./$(BIN)/emulator -scenario demo -master-key-file $(RUN_DIR)/master.key -token-file $(RUN_DIR)/operator.token \
	  -broker tcp://$${SCENEPAY_MQTT_LISTEN:-127.0.0.1:11883} -api http://$${SCENEPAY_HTTP_LISTEN:-127.0.0.1:18080} -settlement-db $(RUN_DIR)/settlement.db $(EMULATOR_FLAGS); rc=$$?; \
	kill -INT $$st $$gw 2>/dev/null; wait $$st; wait $$gw; \
	echo "merchant pages: http://$${SCENEPAY_SETTLEMENT_LISTEN:-127.0.0.1:18090}/m/ (issue a key: ./$(BIN)/settlement keys issue <merchant>, with SCENEPAY_DATA_DIR=$(RUN_DIR))"; \
	exit $$rc

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# check-deploy: the Prometheus config, alert rules and their unit tests
# (promtool from Debian's prometheus package, installed when missing).
check-deploy:
	@deploy/tools/ensure-promtool.sh
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml

# ensure-chromium: Debian's chromium for the merchant page test
# (settlement/merchant renders the page in headless Chromium).
.PHONY: ensure-chromium
ensure-chromium:
	@deploy/tools/ensure-chromium.sh

test: fmt-check vet check-deploy
	$(GO) build ./...
	$(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 ./...

bench: bench-core bench-journal bench-settlement

bench-settlement:
	$(GO) test -run '^$$' -bench 'Ingest|Totals' -benchmem -benchtime 30x ./settlement/store/
	$(GO) test -run '^$$' -bench 'MoveRecent' -benchmem -benchtime 5x ./settlement/store/

bench-core:
	$(GO) test -run '^$$' -bench . -benchmem ./gateway/internal/core/ ./terminals/ ./gateway/internal/scene/... ./gateway/internal/registry/

bench-journal:
	$(GO) test -run '^$$' -bench . -benchmem ./gateway/internal/journal/

# make bench-e2e: the gateway binary against a bare echo responder on a
# private Mosquitto (deploy/ settings), open-loop load stepped to the p99
# objective, plus a 10,000-connection probe; ends with "BENCH {json}".
# BENCH_E2E_FLAGS=-quick for a smoke run, -load-client paho to compare the
# raw load client with paho, -gateway-procs 1 to run the gateway with
# GOMAXPROCS=1 (see emulator bench -h).
BENCH_E2E_FLAGS ?=
.PHONY: bench-e2e
bench-e2e: build
	./$(BIN)/emulator bench -gateway-bin $(BIN)/gateway $(BENCH_E2E_FLAGS)

# make fuzz: every Fuzz target of every package that has one (found, not listed).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN) var
