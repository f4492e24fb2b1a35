# Sluice: a Kubernetes operator for fault-tolerant Kafka consumer workloads.
# `make help` lists the targets.

IMG ?= sluice:dev
K8S_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.6.16

# Pinned tool versions; every tool is built from the Go module proxy.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
KUSTOMIZE_VERSION ?= v5.8.2
KIND_VERSION ?= v0.33.0
# Prometheus 3.x releases are the module's v0.3xx.y tags (v0.316.0 is Prometheus 3.16.0).
PROMETHEUS_VERSION ?= v0.316.0
HELM_VERSION ?= v3.22.0

# Build outputs of this clone go to bin/. Heavy downloads and builds (tools, the
# envtest and cluster binaries, Kafka's jars) are cached by version outside the
# clone, in SLUICE_CACHE, so a fresh clone (CI) reuses them.
LOCALBIN ?= $(CURDIR)/bin
SLUICE_CACHE ?= $(HOME)/.cache/sluice
export SLUICE_CACHE
TOOLBIN ?= $(SLUICE_CACHE)/tools
CONTROLLER_GEN ?= $(TOOLBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(TOOLBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE ?= $(TOOLBIN)/kustomize-$(KUSTOMIZE_VERSION)
KIND ?= $(TOOLBIN)/kind-$(KIND_VERSION)
PROMTOOL ?= $(TOOLBIN)/promtool-$(PROMETHEUS_VERSION)
HELM ?= $(TOOLBIN)/helm-$(HELM_VERSION)
PROMETHEUS ?= $(TOOLBIN)/prometheus-$(PROMETHEUS_VERSION)
ENVTEST_ASSETS ?= $(SLUICE_CACHE)/k8s/$(K8S_VERSION)

export GOTOOLCHAIN = local
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## Run Sluice end to end here: API server, kfake, operator, real workers, live view (ARGS="--chaos --duration 3m"; docs/demo.md).
	go run ./cmd/sluice-demo $(ARGS)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC from the markers (and copy them into charts/sluice).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	hack/sync-chart.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the markers.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail if the committed CRD, RBAC or deepcopy code is stale.
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: tidy-check
tidy-check: ## Fail if go.mod/go.sum are not tidy.
	go mod tidy -diff

.PHONY: envtest
envtest: ## Build etcd and kube-apiserver for envtest from the Go module proxy (cached in $(SLUICE_CACHE)).
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-envtest.sh $(ENVTEST_ASSETS)

.PHONY: postgres
postgres: ## Install the PostgreSQL server (Debian package) the sink and crash tests start.
	hack/install-postgres.sh

.PHONY: test
test: verify-generated vet envtest postgres promtool $(HELM) $(KUSTOMIZE) ## Run all tests (unit, envtest, kfake, PostgreSQL, crash) after checking generated files.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) PROMTOOL=$(PROMTOOL) HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) go test ./... -count=1 -race -coverprofile cover.out
	@# Allocation counts, without the race detector (files tagged !race).
	go test -count=1 -run 'Allocates' ./worker/sink/

.PHONY: test-short
test-short: ## Run the unit tests only (no API server).
	go test -short ./...

# Not part of test: it runs the demo (API server, kfake, operator, worker
# processes, load) for about a minute with a Prometheus scraping it.
.PHONY: test-dashboard
test-dashboard: envtest prometheus ## Prove config/grafana/sluice.json and the alerts on a real Prometheus scraping the demo's operator and workers.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) PROMETHEUS=$(PROMETHEUS) go test -race -tags dashboard -count=1 -timeout 10m -run '^TestDashboardOnARealPrometheus$$' -v ./config/grafana/

.PHONY: mutation-check
mutation-check: postgres envtest ## Break the worker and operator on purpose (in a copy of the tree) and show the tests catching each mutation.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) hack/mutation-check.sh

##@ Kafka

KAFKA_BROKERS ?= 3

.PHONY: kafka
kafka: ## Fetch Apache Kafka's jars from Maven Central (cached in $(SLUICE_CACHE)/kafka).
	hack/kafka.sh install

.PHONY: kafka-up
kafka-up: kafka ## Start a real KRaft cluster of KAFKA_BROKERS (1 or 3) nodes on loopback; prints the bootstrap servers.
	KAFKA_BROKERS=$(KAFKA_BROKERS) hack/kafka.sh up

.PHONY: kafka-down
kafka-down: ## Stop the Kafka cluster and remove its state.
	hack/kafka.sh down

# The packages whose tests honour SLUICE_TEST_KAFKA (internal/testkafka).
KAFKA_TEST_PKGS ?= ./internal/kafka/... ./internal/replay/... ./worker/...
KAFKA_TEST_TIMEOUT ?= 30m

.PHONY: test-kafka
test-kafka: postgres kafka-up ## Run the Kafka-touching tests against the real cluster (started by kafka-up if not up).
	SLUICE_TEST_KAFKA=$$(hack/kafka.sh bootstrap) go test -race -count=1 -timeout $(KAFKA_TEST_TIMEOUT) $(KAFKA_TEST_PKGS)

.PHONY: test-broker-failures
test-broker-failures: postgres ## Broker-failure tests: stop and kill nodes of a real 3-node cluster while the worker runs.
	$(MAKE) kafka-up KAFKA_BROKERS=3
	SLUICE_TEST_BROKER_FAILURES=1 SLUICE_TEST_KAFKA=$$(hack/kafka.sh bootstrap) \
	  go test -race -count=1 -timeout $(KAFKA_TEST_TIMEOUT) -run '^TestBrokerFailure' -v ./worker/

##@ Build

.PHONY: build
build: ## Build the manager and worker binaries into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/worker ./cmd/worker

.PHONY: run
run: manifests generate ## Run the operator against the cluster in ~/.kube/config.
	go run ./cmd/manager --worker-image=$(IMG)

.PHONY: docker-build
docker-build: ## Build the image with Docker (needs a Docker engine).
	docker build -t $(IMG) .

# The image without Docker: the Dockerfile's final-stage layout around the static
# binaries of `make build`, as a docker-archive tarball (hack/mkimage).
IMAGE_TAR ?= $(LOCALBIN)/image/sluice.tar

.PHONY: image
image: build ## Write the image IMG to IMAGE_TAR without Docker; import it into the local cluster if that is up.
	go run ./hack/mkimage -o $(IMAGE_TAR) -tag $(IMG) -add $(LOCALBIN)/manager:/manager -add $(LOCALBIN)/worker:/worker
	@if hack/cluster.sh status >/dev/null 2>&1; then $(MAKE) -s image-load; \
	  else echo "no local cluster up; after make cluster-up: make image-load"; fi

.PHONY: image-load
image-load: ## Import IMAGE_TAR into the local cluster's containerd.
	hack/cluster.sh load-image $(IMAGE_TAR)

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Start a one-node cluster with a real kubelet on this machine, without Docker (root; hack/cluster.sh). Prints the kubeconfig.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/cluster.sh up

.PHONY: cluster-binaries
cluster-binaries: ## Build (or reuse) the local cluster's k8s binaries only (cached in $(SLUICE_CACHE)); cluster-up does it too.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/cluster.sh binaries

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its state, bridge, iptables chains and mounts.
	hack/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Say which of the local cluster's processes run.
	hack/cluster.sh status

# With Docker, kind instead of the local cluster (kind can't run on our CI machines).
KIND_CLUSTER ?= sluice
KIND_NODE_IMAGE ?=

.PHONY: kind-up
kind-up: image $(KIND) ## With Docker: create the kind cluster KIND_CLUSTER (if missing) and load the image into it.
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) $(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))
	$(KIND) load image-archive $(IMAGE_TAR) --name $(KIND_CLUSTER)

.PHONY: kind-down
kind-down: $(KIND) ## Delete the kind cluster KIND_CLUSTER.
	$(KIND) delete cluster --name $(KIND_CLUSTER)

##@ Deployment

KUBECTL ?= kubectl
# deploy sets the image in a copy of config/, so the tracked kustomizations stay
# as committed; the leading _ keeps `go ... ./...` out of the copy's Go files.
DEPLOY_DIR ?= $(LOCALBIN)/_deploy
# How long undeploy waits for the StreamPipelines' finalizers.
UNDEPLOY_TIMEOUT ?= 120s

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the cluster in ~/.kube/config.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRD (and every StreamPipeline) from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator with image IMG.
	rm -rf $(DEPLOY_DIR) && mkdir -p $(DEPLOY_DIR) && cp -R config $(DEPLOY_DIR)/
	cd $(DEPLOY_DIR)/config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build $(DEPLOY_DIR)/config/default | $(KUBECTL) apply --server-side -f -

# The StreamPipelines go first, while the operator still runs: with deletionPolicy
# Delete their finalizer deletes the topics, and once the operator and its RBAC are
# gone nothing would remove it (the CRD would stay "deletion in progress").
.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator: first every StreamPipeline (waiting for their finalizers), then the rest.
	@if $(KUBECTL) get crd streampipelines.streaming.sluice.dev >/dev/null 2>&1; then \
	  echo "deleting every StreamPipeline while the operator runs their finalizers (up to $(UNDEPLOY_TIMEOUT))"; \
	  $(KUBECTL) delete streampipelines --all --all-namespaces --wait --timeout=$(UNDEPLOY_TIMEOUT) || { \
	    echo "undeploy: StreamPipelines are left after $(UNDEPLOY_TIMEOUT) (kubectl get sp -A); their finalizer" \
	      "deletes the retry/DLQ topics and needs the operator running and Kafka reachable:" \
	      "kubectl -n sluice-system logs deploy/sluice-controller-manager. To keep the topics and go on, remove it:" \
	      "kubectl patch sp NAME -n NAMESPACE --type=merge -p '{\"metadata\":{\"finalizers\":null}}'" >&2; \
	    exit 1; }; \
	fi
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: kustomize-check
kustomize-check: $(KUSTOMIZE) ## Check that every kustomization builds.
	@for d in config/default config/namespaced config/crd config/rbac config/manager config/samples config/prometheus; do \
	  $(KUSTOMIZE) build $$d >/dev/null || { echo "kustomize build $$d failed"; exit 1; }; done

##@ Helm chart (charts/sluice)

# Every optional value on, plus the dashboard once the chart holds one.
CHART_ALL_VALUES = -f charts/sluice/ci/all-values.yaml $(if $(wildcard charts/sluice/dashboards/*.json),--set dashboards.enabled=true)

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint charts/sluice; helm template with the default values and with every option on.
	$(HELM) lint --strict charts/sluice
	$(HELM) lint --strict charts/sluice $(CHART_ALL_VALUES)
	$(HELM) template sluice charts/sluice -n sluice-system --include-crds >/dev/null
	$(HELM) template sluice charts/sluice -n sluice-system --include-crds $(CHART_ALL_VALUES) >/dev/null

.PHONY: chart-check
chart-check: $(HELM) $(KUSTOMIZE) envtest ## Check that the chart installs what kustomize build config/default does, and on a real API server (charts/).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) go test -count=1 ./charts/

##@ End to end (docs/e2e.md)

# test-e2e brings nothing up: it runs test/e2e (build tag e2e) against the
# cluster in KUBECONFIG (default: hack/cluster.sh's) with the operator deployed,
# and fails with the command to run when the cluster, CRD or operator is
# missing. e2e does the whole path on the local cluster.
E2E_KUBECONFIG ?= $(if $(KUBECONFIG),$(KUBECONFIG),$(CURDIR)/bin/cluster/admin.kubeconfig)
E2E_KUBECTL ?= $(SLUICE_CACHE)/k8s/$(K8S_VERSION)/kubectl
E2E_TIMEOUT ?= 40m
E2E_ARGS ?=

.PHONY: test-e2e
test-e2e: postgres ## Run the e2e suite against a cluster that is up with the operator deployed (E2E_ARGS="-run Scenario3").
	KUBECONFIG=$(E2E_KUBECONFIG) go test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/ $(E2E_ARGS)

.PHONY: bench-e2e
bench-e2e: postgres ## Measure time to added capacity on the cluster (BENCHMARKS.md; SLUICE_E2E_BENCH_RUNS=5).
	KUBECONFIG=$(E2E_KUBECONFIG) go test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -run '^$$' \
	  -bench TimeToAddedCapacity -benchtime 1x ./test/e2e/

.PHONY: e2e
e2e: ## The whole path: cluster-up, image, install, deploy, test-e2e, undeploy; cluster-down on exit (E2E_KEEP_CLUSTER=1 keeps it).
	@if [[ -z "$(E2E_KEEP_CLUSTER)" ]]; then trap '$(MAKE) -s cluster-down' EXIT; fi; \
	  export KUBECONFIG=$(CURDIR)/bin/cluster/admin.kubeconfig; \
	  $(MAKE) cluster-up && $(MAKE) image && \
	  $(MAKE) install deploy KUBECTL=$(E2E_KUBECTL) && \
	  $(E2E_KUBECTL) -n sluice-system rollout status deploy/sluice-controller-manager --timeout=3m && \
	  $(MAKE) test-e2e E2E_KUBECONFIG=$$KUBECONFIG && \
	  $(MAKE) undeploy KUBECTL=$(E2E_KUBECTL)

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/controller-gen $@

$(GOLANGCI_LINT):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/golangci-lint $@

$(KUSTOMIZE):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/kustomize $@

$(KIND):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install sigs.k8s.io/kind@$(KIND_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/kind $@

# remove_all_sd leaves out Prometheus's service discovery plugins (AWS, Azure,
# GCE, Kubernetes, ...): rule checks and tests don't use them, and they were
# most of promtool's cold build.
$(PROMTOOL):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/promtool $@

$(HELM):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/helm $@

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool (checks and unit-tests config/prometheus/rules.yaml).

# The server, built like promtool (same version and tags) and without the web
# UI's assets (the builtinassets tag): test-dashboard only uses its HTTP API.
$(PROMETHEUS):
	GOBIN=$(TOOLBIN)/.gobin-$(notdir $@) go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)
	mv $(TOOLBIN)/.gobin-$(notdir $@)/prometheus $@

.PHONY: prometheus
prometheus: $(PROMETHEUS) ## Build the Prometheus server (test-dashboard runs it).

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(KUSTOMIZE) $(PROMTOOL) $(HELM) ## Install every tool.
