# kseal — the few targets a newcomer needs.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME ?= 5s

.PHONY: build run test unit fuzz deploy-check integration kms-integration lint bench fleet soak clean

# kseal version prints VERSION and COMMIT (git describe / rev-parse; without
# git, the build information Go embeds stands in).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS = -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/kseal ./cmd/kseal

# The README's run command: no external service needed (in-memory broker,
# local KMS, proxy, and a demo).
run: build
	./bin/kseal dev

# Unit tests (with fuzz seed corpora), short fuzz runs, then the integration
# suite against a real Apache Kafka cluster (installed into .cache/ on first use).
test: lint unit fuzz deploy-check integration kms-integration

# Everything under the race detector, then the allocation tests without it
# (the race detector makes allocation counts meaningless).
unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'Alloc' ./...

fuzz:
	scripts/fuzz.sh $(FUZZTIME)

integration:
	scripts/test-integration.sh

# The Dockerfile, Kubernetes manifests and Helm chart (rendered with Helm's
# library), checked offline (no Docker or cluster here): strict decoding into
# k8s.io/api types, invariants, and the ConfigMap's config validated by kseal
# itself; the Grafana dashboard's queries against the metrics kseal exports.
# See deploy/README.md.
deploy-check:
	cd deploy/validate && $(GO) test -count=1 ./...

# Each KMS provider against its real server (OpenBao, moto), installed into
# .cache/ by the provider's script on first use. Azure's emulator (Lowkey
# Vault's runnable app jar) is not published on Maven Central, only its client
# libraries, so its real-server test is skipped here; set LOWKEY_VAULT_JAR to a
# jar and KSEAL_IT_NO_AZURE= to run it. The provider's unit tests always run.
KSEAL_IT_NO_AZURE ?= 1
kms-integration:
	KSEAL_IT_NO_AZURE=$(KSEAL_IT_NO_AZURE) $(GO) test -tags integration -count=1 -timeout 15m ./internal/kms/...

# gofmt, go.mod tidy, vet and staticcheck on both modules (the integration
# tests and KMS real-server tests included: -tags integration), and
# shellcheck on scripts/ (installed with apt-get when missing;
# scripts/lint-shell.sh).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags integration ./...
	cd deploy/validate && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	scripts/lint-shell.sh

bench:
	scripts/bench.sh

# Several kseal replicas in front of one 3-broker cluster, a KEK per topic
# (BENCHMARKS.md, "Fleet").
fleet:
	scripts/fleet.sh

# The long, bounded load and fault run on its own cluster (default 5 minutes;
# make test runs a ~20 s version of the same soak).
soak:
	scripts/soak.sh

clean:
	rm -rf bin
