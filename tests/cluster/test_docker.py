"""The Docker back-end on the real image: a smaller set than the local/netns tiers.

Each test runs a 3-container cluster (DockerCluster) on a private internal network and drives it
with the real client from the host. The image is brought up to date with the sources first
(build-images.sh project: a no-op when nothing changed).

Skipped only when LOCKD_DOCKER_TESTS=0, or when Docker is unusable here and LOCKD_DOCKER_TESTS
is not 1 (the reason is printed). CI sets LOCKD_DOCKER_TESTS=1 after .ci/docker-setup.sh, so
there a missing daemon or image fails instead of skipping.
"""

import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from lockd_cluster.docker import (DockerCluster, DockerUnavailableError, build_image,
                                  docker_problem, labelled, sweep_leftovers, this_owner)
from lockd_cluster.ports import free_ports
from tests.cluster.conftest import _FAILED

pytestmark = pytest.mark.cluster

READY_TIMEOUT = 30.0


def _unusable(why: str):
    if os.environ.get("LOCKD_DOCKER_TESTS") == "1":
        pytest.fail(f"LOCKD_DOCKER_TESTS=1 but Docker is unusable: {why}", pytrace=False)
    msg = f"Docker tests skipped: {why}"
    print(msg)
    warnings.warn(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def docker_image():
    """The project image tag, built from the current sources when needed."""
    if os.environ.get("LOCKD_DOCKER_TESTS") == "0":
        pytest.skip("LOCKD_DOCKER_TESTS=0")
    why = docker_problem()
    if why:
        _unusable(why)
    try:
        return build_image()
    except DockerUnavailableError as e:
        _unusable(str(e))


@pytest.fixture
def dcluster(request, docker_image, cluster_dir):
    """A running 3-container cluster: a ready leader, every member joined."""
    c = DockerCluster(3, cluster_dir, image=docker_image, stop_grace=5)
    try:
        c.start()
        c.wait_for_members(timeout=READY_TIMEOUT)
        yield c
    finally:
        if request.node.stash.get(_FAILED, False):
            for n in c.nodes:
                print(f"----- {n.name} ({n.container}), last lines:\n{c.log_tail(n.index, 40)}")
        c.stop()


@pytest.fixture
def dclients():
    """`dclients(endpoints, timeout=15)` → a lockd_client; every one is closed at teardown."""
    import lockd_client

    opened = []

    def connect(endpoints, *, timeout=15.0):
        c = lockd_client.connect(endpoints, timeout=timeout)
        opened.append(c)
        return c

    yield connect
    for c in opened:
        try:
            c.close()
        except Exception:  # a test may have left the cluster without a leader
            pass


def lock_cycle(client, name, *, timeout=30.0) -> int:
    """Acquire and release `name` in a fresh session; the grant's token."""
    with client.session(ttl=10) as s:
        lock = s.lock(name)
        assert lock.acquire(timeout=timeout)
        token = lock.token
        lock.release()
    return token


def test_cluster_elects_a_leader_serves_locks_and_stop_leaves_nothing(
        docker_image, cluster_dir, dclients):
    c = DockerCluster(3, cluster_dir / "own", image=docker_image, stop_grace=5)
    try:
        c.start()
        lead = c.wait_for_members(timeout=READY_TIMEOUT)
        assert c.is_running(lead) and not c.is_paused(lead)
        # Nodes listen and advertise on their container address; the host dials it directly.
        assert c.endpoints == ",".join(f"{n.ip}:7001" for n in c.nodes)
        status = c.status(lead)
        assert {m.grpc_address for m in status.members} == {n.grpc_address for n in c.nodes}
        client = dclients(c.endpoints)
        t1 = lock_cycle(client, "jobs/docker")
        t2 = lock_cycle(client, "jobs/docker")
        assert t2 > t1 > 0
        assert '"node_started"' in c.logs(lead)
        assert labelled(cluster_tag=c.tag)        # containers and network exist
    finally:
        c.stop()
    assert labelled(cluster_tag=c.tag) == []
    c.stop()                                       # idempotent
    assert (c.nodes[0].log_path).read_text().count('"node_started"') == 1   # log kept


def test_new_leader_serves_after_the_leader_container_is_killed(dcluster, dclients):
    c = dcluster
    client = dclients(c.endpoints)
    before = lock_cycle(client, "jobs/kill")
    old = c.wait_for_leader()
    c.kill(old)
    assert not c.is_running(old)
    killed_at = time.monotonic()
    new = c.wait_for_leader(timeout=15, exclude=[old])
    assert new != old
    after = lock_cycle(client, "jobs/kill")
    assert after > before
    assert time.monotonic() - killed_at < 15
    c.restart(old)                                 # rejoins on the same volume and address
    c.wait_for_members(timeout=READY_TIMEOUT)


def test_majority_serves_while_the_leader_is_partitioned_away(dcluster, dclients):
    c = dcluster
    client = dclients(c.endpoints)
    before = lock_cycle(client, "jobs/partition")
    old = c.isolate_leader()
    assert c.dropped_links == {(old, k) for k in range(3) if k != old} | \
        {(k, old) for k in range(3) if k != old}
    new = c.wait_for_leader(timeout=15, exclude=[old])
    assert new != old
    # A fresh client that tries a majority node first. (One whose leader guess is the old
    # leader waits ~5 s there: a deposed leader fails in-flight proposals only at lockd's
    # propose timeout.)
    majority_first = [c.node(k).grpc_address for k in range(3) if k != old]
    fresh = dclients(",".join([*majority_first, c.node(old).grpc_address]))
    assert lock_cycle(fresh, "jobs/partition") > before
    # The host still reaches the isolated node, which cannot serve a write.
    me = [m for m in c.status(old, local_only=True).members if m.id == c.node(old).id]
    assert me
    only_old = dclients(c.node(old).grpc_address, timeout=2)
    with pytest.raises(Exception):
        lock_cycle(only_old, "jobs/partition-minority", timeout=1)
    # Its rules survive a crash: the entrypoint applies them before lockd starts.
    c.kill(old)
    c.restart(old)
    assert "-A LOCKD-FW -s" in c.rules(c.node(old).container)
    time.sleep(1.5)                                # > the max election timeout
    assert c.leader() == new
    c.heal()
    assert c.dropped_links == set()
    c.wait_for_members(timeout=READY_TIMEOUT)              # the cluster is whole again


def test_paused_follower_does_not_stop_the_cluster_and_rejoins(dcluster, dclients):
    c = dcluster
    client = dclients(c.endpoints)
    lead = c.wait_for_leader()
    follower = next(i for i in range(3) if i != lead)
    c.pause(follower)
    assert c.is_paused(follower) and c.is_running(follower)
    assert follower not in c.reachable()
    assert lock_cycle(client, "jobs/pause") > 0
    c.isolate(follower)                            # rules reach a frozen container too
    c.resume(follower)
    assert c.rules(c.node(follower).container).count("-j DROP") == 2
    c.heal()
    assert not c.is_paused(follower)
    c.wait_for_members(timeout=READY_TIMEOUT)
    assert c.status(follower, local_only=True).members


def test_restart_of_every_container_keeps_locks_and_the_token_counter(dcluster, dclients):
    c = dcluster
    client = dclients(c.endpoints, timeout=30)
    with client.session(ttl=30) as s:
        held = s.lock("jobs/held")
        assert held.acquire(timeout=10)
        c.restart_all()                            # docker stop (all at once), docker start
        c.wait_for_leader(timeout=READY_TIMEOUT)
        info = client.get_lock("jobs/held")
        assert info is not None and [h.token for h in info.holders] == [held.token]
        assert s.alive and "jobs/held" in s.info().held
        assert lock_cycle(client, "jobs/other") > held.token


COMPOSE_DIR = Path(__file__).resolve().parents[2] / "cluster" / "docker"


def _compose_argv() -> list[str] | None:
    """docker-compose (v1), else `docker compose` (v2), else None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return ["docker", "compose"] if r.returncode == 0 else None


def test_compose_file_starts_a_cluster_that_serves_through_every_published_port(
        docker_image, dclients):
    compose = _compose_argv()
    if compose is None:
        pytest.skip("neither docker-compose nor `docker compose` is installed")
    ports = free_ports(3)
    project = f"lockd-test-compose-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
    env.update(LOCKD_IMAGE=docker_image, LOCKD_TEST_OWNER=this_owner(),
               LOCKD_PORT1=str(ports[0]), LOCKD_PORT2=str(ports[1]), LOCKD_PORT3=str(ports[2]))
    argv = [*compose, "-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.test.yml"]

    def run(*args, timeout=120):
        return subprocess.run([*argv, *args], cwd=COMPOSE_DIR, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    sweep_leftovers()
    try:
        r = run("up", "-d", "--no-build")
        assert r.returncode == 0, r.stderr
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        # Each endpoint alone: a follower's redirect (0.0.0.0:PORT) must lead to the leader.
        tokens = [lock_cycle(dclients(e, timeout=30), "jobs/compose") for e in endpoints]
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
    finally:
        if run("ps", "-q").stdout.strip():
            print(run("logs", "--no-color").stdout[-4000:])
        r = run("down", "-v", "-t", "5")
    assert r.returncode == 0, r.stderr
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter",
                           f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, timeout=30).stdout.split()
    assert left == [] and not [n for n in labelled() if n.startswith(project)]
