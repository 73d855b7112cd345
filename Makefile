# lockd developer entry points. `make run` and `make test` do all the set-up.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-node test-cluster proto proto-check unasync unasync-check typecheck lint clean venv

venv: $(STAMP)

# Two distributions: the client (client/, lockd-client) first, then the server, which depends on it.
$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./client
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

# The contract's code is generated into the client distribution (client/lockd_client/v1/, the
# one copy; the server imports it as lockd.v1): `-Ilockd_client/v1=proto/lockd/v1` names the
# file lockd_client/v1/lockd.proto, so the generated imports point into lockd_client. Typed by
# lockd_pb2.pyi (--pyi_out) and lockd_pb2_grpc.pyi (mypy-protobuf's --mypy_grpc_out).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Ilockd_client/v1=proto/lockd/v1 \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
	  --python_out=client --grpc_python_out=client --mypy_out=client --mypy_grpc_out=client \
	  proto/lockd/v1/lockd.proto
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
	  proto/lockd/bench/etcdpb/rpc.proto proto/lockd/bench/etcdpb/v3lock.proto

GENERATED := client/lockd_client/v1 lockd/bench/etcdpb

# Regenerates and fails if the committed code differs (or generated code is not committed).
proto-check: proto
	git diff --exit-code -- $(GENERATED)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || \
	  { git status --short -- $(GENERATED); exit 1; }

# The sync client (client/lockd_client/_sync/) is generated from the async one (_async/).
unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

# Fails (naming the file) if a generated sync module is stale.
unasync-check: $(STAMP)
	$(BIN)/python scripts/unasync.py --check

# Seeded fault runs (docs/testing.md): make chaos SEED=7 DURATION=120 BACKEND=local WORKLOAD=all
# SEED empty = a fresh random seed (printed first); the report goes to OUT (default chaos-out/BACKEND-SEED).
# FAULTS=pause_follower,kill_leader replaces the nemesis mix; a leader change no fault on the
# leader explains fails the run (AVAILABILITY=report only reports it).
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m lockd_cluster.chaos $(if $(SEED),--seed $(SEED)) --duration $(or $(DURATION),60) \
	  --backend $(or $(BACKEND),local) --workload $(or $(WORKLOAD),all) $(if $(OUT),--out $(OUT)) \
	  $(if $(FAULTS),--faults $(FAULTS)) $(if $(AVAILABILITY),--availability $(AVAILABILITY))

# The soak (docs/testing.md): a local 3-node cluster, the mixed load of every primitive and a
# fault every 20 s for SOAK_MINUTES (or DURATION, minutes; default 30); samples every node's
# and client's RSS/fds/threads, journal, dump and log size; fails on a leak or a violation.
# The report goes to OUT (default soak-out/SEED). More flags: SOAK_ARGS="--clients 6".
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m lockd_cluster.soak --minutes $(or $(SOAK_MINUTES),$(DURATION),30) \
	  $(if $(SEED),--seed $(SEED)) $(if $(OUT),--out $(OUT)) \
	  $(if $(AVAILABILITY),--availability $(AVAILABILITY)) $(SOAK_ARGS)

# Fuzzing (docs/security.md): a private local 3-node cluster gets CASES random and adversarial
# RPCs; exit 0 if no node crashed, nothing answered UNKNOWN/INTERNAL and the replicas agree.
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -m lockd_cluster.fuzz --cases $(or $(CASES),10000) $(if $(SEED),--seed $(SEED))

# Benchmarks (docs/performance.md): a private local 3-node cluster (fsync on if `lockd serve`
# has --fsync), the whole suite REPEAT times (medians and spread). Results also go to OUT
# (default bench-out/bench.json). More flags: make bench BENCH_ARGS="--sessions 10000 --procs 2"
.PHONY: bench bench-compare
bench: $(STAMP)
	@mkdir -p $(dir $(or $(OUT),bench-out/bench.json))
	$(BIN)/lockd bench --local --repeat $(or $(REPEAT),3) --out $(or $(OUT),bench-out/bench.json) \
	  $(BENCH_ARGS)

# lockd beside a 3-node etcd on the same box (Debian: apt-get install etcd-server), same
# generator, same run, fsync on for both; the comparison table with ratios (docs/performance.md).
bench-compare: $(STAMP)
	@mkdir -p $(dir $(or $(OUT),bench-out/compare.json))
	$(BIN)/lockd bench --compare etcd --repeat $(or $(REPEAT),3) \
	  --out $(or $(OUT),bench-out/compare.json) $(BENCH_ARGS)

# Docker images of the Docker test back-end (tests/cluster/test_docker.py, cluster/docker/):
# installs docker.io/mmdebstrap/docker-compose if missing, starts dockerd, builds what changed.
.PHONY: docker-images
docker-images: $(STAMP)
	bash .ci/docker-setup.sh

# mypy --strict (settings in client/pyproject.toml) over the client package, the generated
# _sync/ included, and over tests/typecheck/public_api.py, the public API as a user's checker
# sees it. The generated protobuf code is typed by its .pyi stubs (`make proto`).
typecheck: $(STAMP)
	cd client && $(abspath $(BIN))/python -m mypy lockd_client ../tests/typecheck/public_api.py

lint: $(STAMP)
	$(BIN)/python -m compileall -q lockd client cluster tests

clean:
	rm -rf $(VENV) build *.egg-info
