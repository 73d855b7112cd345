# lockd developer entry points. `make run` and `make test` do all the set-up.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-node test-cluster proto proto-check unasync unasync-check lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/lockd up --nodes 3

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-node: $(STAMP)
	$(BIN)/python -m pytest -q tests/node

test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q tests/cluster

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto \
	  --python_out=. --grpc_python_out=. --pyi_out=. \
	  proto/lockd/v1/lockd.proto

# Regenerates and fails if the committed code differs.
proto-check: proto
	git diff --exit-code -- lockd/v1

# The sync client (client/lockd_client/_sync/) is generated from the async one (_async/).
unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

# Fails (naming the file) if a generated sync module is stale.
unasync-check: $(STAMP)
	$(BIN)/python scripts/unasync.py --check

# Seeded fault runs (docs/testing.md): make chaos SEED=7 DURATION=120 BACKEND=local WORKLOAD=all
# SEED empty = a fresh random seed (printed first); the report goes to OUT (default chaos-out/BACKEND-SEED).
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m lockd_cluster.chaos $(if $(SEED),--seed $(SEED)) --duration $(or $(DURATION),60) \
	  --backend $(or $(BACKEND),local) --workload $(or $(WORKLOAD),all) $(if $(OUT),--out $(OUT))

# Fuzzing (docs/security.md): a private local 3-node cluster gets CASES random and adversarial
# RPCs; exit 0 if no node crashed, nothing answered UNKNOWN/INTERNAL and the replicas agree.
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -m lockd_cluster.fuzz --cases $(or $(CASES),10000) $(if $(SEED),--seed $(SEED))

# Benchmarks (docs/performance.md): a private local 3-node cluster (fsync on if `lockd serve`
# has --fsync), the whole suite REPEAT times (medians and spread). Results also go to OUT
# (default bench-out/bench.json). More flags: make bench BENCH_ARGS="--sessions 10000 --procs 2"
.PHONY: bench
bench: $(STAMP)
	@mkdir -p $(dir $(or $(OUT),bench-out/bench.json))
	$(BIN)/lockd bench --local --repeat $(or $(REPEAT),3) --out $(or $(OUT),bench-out/bench.json) \
	  $(BENCH_ARGS)

# Docker images of the Docker test back-end (tests/cluster/test_docker.py, cluster/docker/):
# installs docker.io/mmdebstrap/docker-compose if missing, starts dockerd, builds what changed.
.PHONY: docker-images
docker-images: $(STAMP)
	bash .ci/docker-setup.sh

lint: $(STAMP)
	$(BIN)/python -m compileall -q lockd client cluster tests

clean:
	rm -rf $(VENV) build *.egg-info
