"""DockerCluster: N `lockd serve` nodes, one container each, on a private Docker network.

Drives the docker CLI (`docker` on PATH, or `docker=`) through subprocess; no SDK. The image
is `image=`, else $LOCKD_DOCKER_IMAGE, else `lockd-node:latest`, which the first `start()` of
the process brings up to date with the sources (`build_image()`: cluster/docker/build-images.sh
project, a no-op when nothing changed). `make docker-images` (= `.ci/docker-setup.sh`) builds
the base image that needs, once per machine.
Layout, for a cluster tagged TAG (6 hex digits):

    network   lockd-test-TAG        user-defined bridge, --internal, subnet 10.X.Y.0/24
                                    (X in 64..127, checked against every host route and Docker
                                    network), gateway 10.X.Y.1 = the harness host
    node k    lockd-test-TAG-nodeK  10.X.Y.(10+k): gRPC :7001, Raft :7101; --init,
                                    --cap-add NET_ADMIN; base_dir/nodeK bind-mounted as /data
    client    lockd-test-TAG-cK     10.X.Y.(100+k), the image running `sleep infinity`

The network is `--internal`: containers reach each other and the host, nothing else (no NAT),
and the host dials the nodes' container addresses (`endpoints`), which are also the gRPC
addresses the nodes advertise, so client redirects work. Raft is encrypted with a random
password in `base_dir/raft-password` (mounted read-only). Each node's stdout/stderr is
`docker logs`; `stop()` saves it to `base_dir/nodeK/lockd.log` before removing the container.

Faults: `kill` is `docker kill -s KILL` (tini, then every process of the container, dies),
`pause` is `docker pause` (cgroup freezer), `restart` is `docker stop` + `docker start` (same
container, address and data). Network faults are iptables DROP rules in the receiving
container's INPUT chain (`lockd-fw`, in the image): a dropped link src->dst is a rule
`-s IP(src)` in dst. Each container's rule set is also written to `base_dir/fw/NAME/fw.rules`
(mounted at /run/lockd-ctl), which the entrypoint applies before `lockd serve` starts, so a
restarted node keeps its faults from its first packet. A paused container gets its rules
through a helper container in its network namespace (`docker exec` cannot enter it).

Cleanup: everything is labelled `lockd-test=1`, `lockd-test.cluster=TAG` and
`lockd-test.owner=PID:STARTTIME`. `stop()` removes this cluster's containers (and anything
else carrying its cluster label, with anonymous volumes) and its network; `start()` first
sweeps labelled containers, networks and volumes whose owner process is gone (a killed test
run); an atexit hook stops a cluster that was not stopped.

Client hosts (`add_client_host`) are containers of the same image: commands run there with
`docker exec -i`, where `python` (and the host's `sys.executable` path, via a wrapper) is the
image's interpreter with lockd_client. A killed `docker exec` does not kill its process.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lockd_cluster.base import ClientHost, Cluster, ClusterError, Node, NodeExitedError, \
    partition_links

LABEL = "lockd-test"
DEFAULT_IMAGE = "lockd-node:latest"
NODE_OCTET = 10          # node k (0-based) is .(11 + k)
CLIENT_OCTET = 100       # client host k (1-based) is .(100 + k)
MAX_NODES = CLIENT_OCTET - NODE_OCTET - 1
MAX_CLIENTS = 254 - CLIENT_OCTET
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "docker" / "build-images.sh"
_CTL = "/run/lockd-ctl"
_PASSWORD = "/run/lockd/raft-password"
_STATE_TTL = 0.25        # seconds a `docker inspect` of every node is reused by polls


class DockerUnavailableError(ClusterError):
    """Docker cannot be used here (no CLI, no daemon, no permission, no image); says why."""


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 60.0,
         input: str | None = None) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                           timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    except FileNotFoundError:
        raise DockerUnavailableError(f"`{argv[0]}` not found") from None
    if check and r.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed (exit {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()}")
    return r


def docker_problem(docker: str = "docker") -> str | None:
    """Why the docker CLI cannot drive a daemon here, or None if it can."""
    exe = shutil.which(docker)
    if exe is None:
        return (f"no `{docker}` command on PATH (Debian: apt-get install docker.io, or run "
                f".ci/docker-setup.sh)")
    try:
        r = subprocess.run([exe, "version", "-f", "{{.Server.Version}}"], capture_output=True,
                           text=True, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 20 s (is dockerd hung?)"
    if r.returncode != 0 or not r.stdout.strip():
        err = (r.stderr or r.stdout).strip().splitlines()
        return ("the Docker daemon does not answer (start dockerd, e.g. .ci/docker-setup.sh): "
                + (err[-1] if err else f"exit {r.returncode}"))
    return None


def image_exists(image: str, docker: str = "docker") -> bool:
    """True if `image` is in the local image store."""
    return _run([docker, "image", "inspect", image], check=False, timeout=30).returncode == 0


def build_image(*, timeout: float = 900.0) -> str:
    """Bring the project image up to date with the sources (build-images.sh project); its tag.

    Quick when nothing changed (a hash of the inputs names the image). Needs the base image:
    raises DockerUnavailableError with the script's message if `make docker-images` never ran.
    """
    try:
        r = subprocess.run(["bash", str(BUILD_SCRIPT), "project"], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{BUILD_SCRIPT} did not finish within {timeout:.0f}s") from None
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        raise DockerUnavailableError(
            f"{BUILD_SCRIPT.name} project failed (exit {r.returncode}): "
            + (err[-1] if err else "no message"))
    return r.stdout.strip().splitlines()[-1]


_refreshed: str | None = None
_refresh_lock = threading.Lock()


def _refreshed_default_image(docker: str) -> str:
    """DEFAULT_IMAGE, rebuilt from the sources first (once per process, when possible).

    If the rebuild is impossible (no base image, no mmdebstrap, …) but an image exists, that
    one is used with a warning: it may hold older code.
    """
    global _refreshed
    with _refresh_lock:
        if _refreshed is None:
            try:
                _refreshed = build_image()
            except ClusterError as e:
                if not image_exists(DEFAULT_IMAGE, docker):
                    raise
                warnings.warn(f"using {DEFAULT_IMAGE} as it is (it may be older than the "
                              f"sources): {e}")
                _refreshed = DEFAULT_IMAGE
        return _refreshed


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[19] if fields[0] != "Z" else None


def _owner_alive(owner: str) -> bool:
    pid, _, start = owner.partition(":")
    if not pid.isdigit():
        return False
    now = _proc_start_time(int(pid))
    return now is not None and (not start or now == start)


def this_owner() -> str:
    """The owner label value of objects this process creates ("PID:STARTTIME")."""
    return f"{os.getpid()}:{_proc_start_time(os.getpid()) or ''}"


def sweep_leftovers(docker: str = "docker") -> list[str]:
    """Remove `lockd-test` containers and networks whose owner process is gone; their names.

    Only objects carrying this harness's label are touched, and a cluster whose owner is alive
    (this process or a concurrent run) is left alone.
    """
    removed: list[str] = []
    fmt = '{{.Names}}\t{{.Label "lockd-test.owner"}}'
    out = _run([docker, "ps", "-a", "--filter", f"label={LABEL}", "--format", fmt]).stdout
    dead = [line.split("\t")[0] for line in out.splitlines()
            if line.strip() and not _owner_alive(line.partition("\t")[2].strip())]
    if dead:
        _run([docker, "rm", "-f", "-v", *dead], check=False)
        removed += dead
    fmt = '{{.Name}}\t{{.Label "lockd-test.owner"}}'
    for kind in ("network", "volume"):      # volumes: those of the compose test
        out = _run([docker, kind, "ls", "--filter", f"label={LABEL}", "--format", fmt]).stdout
        for line in out.splitlines():
            name, _, owner = line.partition("\t")
            if name.strip() and not _owner_alive(owner.strip()):
                if _run([docker, kind, "rm", name.strip()], check=False).returncode == 0:
                    removed.append(name.strip())
    return removed


def labelled(docker: str = "docker", cluster_tag: str | None = None) -> list[str]:
    """Names of the containers, networks and volumes with this harness's label (or a cluster's)."""
    flt = f"label={LABEL}.cluster={cluster_tag}" if cluster_tag else f"label={LABEL}"
    c = _run([docker, "ps", "-a", "--filter", flt, "--format", "{{.Names}}"]).stdout.split()
    n = _run([docker, "network", "ls", "--filter", flt, "--format", "{{.Name}}"]).stdout.split()
    v = _run([docker, "volume", "ls", "--filter", flt, "--format", "{{.Name}}"]).stdout.split()
    return c + n + v


@dataclass
class DockerNode(Node):
    """A node run as container `container` at address `ip` on the cluster's network."""

    container: str = ""
    ip: str = ""
    stopped_by_harness: bool = False

    @property
    def log_path(self) -> Path:
        """Where `stop()` saves the container's log (`DockerCluster.logs` reads it live)."""
        return self.data_dir / "lockd.log"


@dataclass
class DockerClientHost(ClientHost):
    """A client host: a container on the cluster's network (`docker exec -i CONTAINER ...`).

    Commands run inside the image: `python` there has lockd and lockd_client. The host's
    `sys.executable` path is linked to it in the container, so `argv(sys.executable, ...)`
    works too. A killed `docker exec` does not kill its process; `stop()` removes the container.
    """

    container: str = ""
    python: str = "python"


@dataclass
class _State:
    status: str                  # created, running, paused, restarting, exited, dead, missing
    exit_code: int = 0
    oom: bool = False
    error: str = ""


class DockerCluster(Cluster):
    """N lockd nodes as containers of one image on a private, internal Docker network.

    Same verbs and semantics as LocalCluster, plus the network faults of `Cluster`
    (`supports_partitions`). Raises DockerUnavailableError at construction if docker cannot
    be used, and at `start()` if the image is missing. `extra_args` go to every `lockd serve`.
    """

    supports_partitions = True

    def __init__(self, n: int, base_dir: str | os.PathLike, *, image: str | None = None,
                 extra_args: Sequence[str] = (), log_level: str = "info",
                 stop_grace: float = 10.0, grpc_port: int = 7001, raft_port: int = 7101,
                 tag: str | None = None, docker: str = "docker") -> None:
        super().__init__()
        if not 1 <= n <= MAX_NODES:
            raise ValueError(f"a docker cluster has 1..{MAX_NODES} nodes, not {n}")
        if grpc_port == raft_port:
            raise ValueError("gRPC and Raft need different ports")
        problem = docker_problem(docker)
        if problem:
            raise DockerUnavailableError(problem)
        self.docker = shutil.which(docker) or docker
        self.image = image or os.environ.get("LOCKD_DOCKER_IMAGE") or DEFAULT_IMAGE
        # The default image is brought up to date with the sources at the first start().
        self._refresh = image is None and not os.environ.get("LOCKD_DOCKER_IMAGE")
        self.base_dir = Path(base_dir).resolve()
        self.extra_args = tuple(extra_args)
        self.log_level = log_level
        self.stop_grace = stop_grace
        self.grpc_port, self.raft_port = grpc_port, raft_port
        self._fixed_tag = tag is not None
        self.password_file = self.base_dir / "raft-password"
        self.owner = this_owner()
        self.nodes: list[DockerNode] = []
        self._address(n, *self._pick_subnet(tag))
        self._clients: dict[str, DockerClientHost] = {}
        self._links: set[tuple[int, int]] = set()
        self._isolated_clients: set[str] = set()
        self._applied: dict[str, frozenset[str]] = {}    # container -> dropped source IPs
        self._net_up = False
        self._created: set[str] = set()                  # containers that exist (ours)
        self._state_cache: tuple[float, dict[str, _State]] | None = None
        self._lock = threading.RLock()
        self._atexit_registered = False

    def _address(self, n: int, tag: str, subnet: ipaddress.IPv4Network) -> None:
        """Name the network and containers after `tag`; give the nodes addresses in `subnet`."""
        self.tag, self.subnet = tag, subnet
        self.network = f"{LABEL}-{tag}"
        self.gateway = str(subnet[1])
        self.nodes = []
        for k in range(n):
            ip = str(subnet[NODE_OCTET + 1 + k])
            self.nodes.append(DockerNode(
                index=k, raft_address=f"{ip}:{self.raft_port}",
                grpc_address=f"{ip}:{self.grpc_port}", data_dir=self.base_dir / f"node{k + 1}",
                container=f"{self.network}-node{k + 1}", ip=ip))

    # ------------------------------------------------------------ docker helpers

    def _docker(self, *args: str, check: bool = True, timeout: float = 60.0,
                input: str | None = None) -> subprocess.CompletedProcess:
        return _run([self.docker, *args], check=check, timeout=timeout, input=input)

    def _start_containers(self, names: Sequence[str]) -> None:
        """`docker start` each container, concurrently (the daemon starts one per request)."""
        procs = [(n, subprocess.Popen([self.docker, "start", n], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      text=True)) for n in names]
        problems = []
        for name, p in procs:
            try:
                out, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                problems.append(f"{name}: `docker start` did not finish within 120s")
                continue
            if p.returncode != 0:
                problems.append(f"{name}: `docker start` failed (exit {p.returncode}): "
                                f"{(err or out).strip()}")
        self._invalidate()
        if problems:
            raise ClusterError("; ".join(problems))

    def _labels(self) -> list[str]:
        return ["--label", f"{LABEL}=1", "--label", f"{LABEL}.cluster={self.tag}",
                "--label", f"{LABEL}.owner={self.owner}"]

    def _pick_subnet(self, tag: str | None) -> tuple[str, ipaddress.IPv4Network]:
        """A tag and its 10.X.Y.0/24 (X in 64..127) used by no host route nor Docker network."""
        used = self._used_networks()
        for _ in range(64):
            t = tag if tag is not None else secrets.token_hex(3)
            if not re.fullmatch(r"[0-9a-f]{6}", t):
                raise ValueError(f"tag must be 6 lowercase hex digits, got {t!r}")
            v = int(t, 16)
            net = ipaddress.ip_network(f"10.{64 + (v >> 8) % 64}.{v & 0xFF}.0/24")
            if not any(net.overlaps(u) for u in used):
                return t, net
            if tag is not None:
                raise ClusterError(f"subnet {net} of tag {tag} is already in use on this host")
        raise ClusterError("found no free 10.X.Y.0/24 for the docker cluster")

    def _used_networks(self) -> list[ipaddress.IPv4Network]:
        nets: list[ipaddress.IPv4Network] = []
        text = ""
        ip = shutil.which("ip")
        if ip:
            for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
                text += _run([ip, *args], check=False).stdout
        ids = _run([self.docker, "network", "ls", "-q"], check=False).stdout.split()
        if ids:
            text += _run([self.docker, "network", "inspect", "-f",
                          "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
                         check=False).stdout
        for tok in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", text):
            try:
                n = ipaddress.ip_network(tok, strict=False)
            except ValueError:
                continue
            if n.prefixlen > 0:
                nets.append(n)
        return nets

    def _states(self, *, fresh: bool = False) -> dict[str, _State]:
        """State of every node and client container (one `docker inspect`, briefly cached)."""
        with self._lock:
            now = time.monotonic()
            if not fresh and self._state_cache and now - self._state_cache[0] < _STATE_TTL:
                return self._state_cache[1]
            names = [n.container for n in self.nodes if n.container in self._created]
            names += [c.container for c in self._clients.values() if c.container in self._created]
            states = {name: _State("missing") for name in names}
            if names:
                fmt = ("{{.Name}}\t{{.State.Status}}\t{{.State.ExitCode}}\t"
                       "{{.State.OOMKilled}}\t{{.State.Error}}")
                r = self._docker("inspect", "-f", fmt, *names, check=False, timeout=30)
                for line in r.stdout.splitlines():
                    parts = line.split("\t")
                    if len(parts) == 5:
                        states[parts[0].lstrip("/")] = _State(
                            parts[1], int(parts[2] or 0), parts[3] == "true", parts[4])
            self._state_cache = (time.monotonic(), states)
            return states

    def _invalidate(self) -> None:
        with self._lock:
            self._state_cache = None

    def _state(self, name: str) -> _State:
        return self._states().get(name, _State("missing"))

    # ------------------------------------------------------------ set-up

    def _ensure_network(self) -> None:
        if self._net_up:
            return
        sweep_leftovers(self.docker)
        if not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        for attempt in range(5):
            r = self._docker("network", "create", "--driver", "bridge", "--internal",
                             "--subnet", str(self.subnet), "--gateway", self.gateway,
                             *self._labels(), self.network, check=False)
            if r.returncode == 0:
                break
            # A concurrent run took the subnet since we picked it: pick again (no container
            # exists yet, so the nodes can still change address).
            if "overlap" not in r.stderr or self._fixed_tag or attempt == 4:
                raise ClusterError(f"docker network create {self.network} ({self.subnet}) "
                                   f"failed: {r.stderr.strip()}")
            self._address(len(self.nodes), *self._pick_subnet(None))
        self._net_up = True

    def _ensure_password(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")

    def _ctl_dir(self, container: str) -> Path:
        return self.base_dir / "fw" / container

    def _run_as(self) -> list[str]:
        uid, gid = os.getuid(), os.getgid()
        return [] if uid == 0 else ["-e", f"LOCKD_RUN_AS={uid}:{gid}"]

    def _create_node(self, node: DockerNode) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        ctl = self._ctl_dir(node.container)
        ctl.mkdir(parents=True, exist_ok=True)
        self._write_rules(node.container, self._desired_rules().get(node.container, frozenset()))
        peers = ",".join(n.raft_address for n in self.nodes if n.index != node.index)
        env = {
            "LOCKD_RAFT_ADDRESS": node.raft_address,
            "LOCKD_GRPC_ADDRESS": node.grpc_address,
            "LOCKD_PEERS": peers,
            "LOCKD_DATA_DIR": "/data",
            "LOCKD_RAFT_PASSWORD_FILE": _PASSWORD,
            "LOCKD_LOG_FORMAT": "json",
            "LOCKD_LOG_LEVEL": self.log_level,
            "LOCKD_FW_RULES": f"{_CTL}/fw.rules",
        }
        argv = ["create", "--name", node.container, "--hostname", node.name, *self._labels(),
                "--network", self.network, "--ip", node.ip, "--init",
                "--cap-add", "NET_ADMIN", "--stop-timeout", str(int(max(1, self.stop_grace))),
                "-v", f"{node.data_dir}:/data",
                "-v", f"{self.password_file}:{_PASSWORD}:ro",
                "-v", f"{ctl}:{_CTL}:ro", *self._run_as()]
        for k, v in env.items():
            argv += ["-e", f"{k}={v}"]
        self._docker(*argv, self.image, "serve", *self.extra_args)
        self._created.add(node.container)

    def command(self, i: int) -> list[str]:
        """The `docker start` argv that (re)starts node i's container."""
        return [self.docker, "start", self.nodes[i].container]

    # ------------------------------------------------------------ process verbs

    def start(self) -> None:
        """Create the network (first sweeping leftovers) and containers; start stopped nodes.

        Does not wait for a leader. On failure everything created is removed again.
        """
        if self._refresh:
            self.image = _refreshed_default_image(self.docker)
            self._refresh = False
        if not image_exists(self.image, self.docker):
            raise DockerUnavailableError(
                f"image {self.image} is missing: run `make docker-images` "
                f"(or .ci/docker-setup.sh)")
        try:
            self._ensure_password()
            self._ensure_network()
            for n in self.nodes:
                if n.container not in self._created:
                    self._create_node(n)
            todo = [n for n in self.nodes if not self.is_running(n.index)]
            for n in todo:
                n.stopped_by_harness = False
            if todo:
                self._start_containers([n.container for n in todo])
            self._invalidate()
        except BaseException:
            try:
                self.stop()
            except ClusterError:
                pass
            raise

    def stop(self) -> None:
        """Stop every node (SIGTERM, one shared grace, SIGKILL), save the logs, remove every
        container and the network. Idempotent; ClusterError if something could not be removed.
        """
        problems: list[str] = []
        with self._lock:
            names = [n.container for n in self.nodes if n.container in self._created]
            clients = [c.container for c in self._clients.values()
                       if c.container in self._created]
            if names:
                for n in self.nodes:
                    n.stopped_by_harness = True
                states = self._states(fresh=True)
                paused = [c for c in names if states[c].status == "paused"]
                if paused:
                    self._docker("unpause", *paused, check=False)
                running = [c for c in names if states[c].status in ("running", "paused",
                                                                     "restarting")]
                if running:
                    self._docker("stop", "-t", str(int(max(1, self.stop_grace))), *running,
                                 check=False, timeout=self.stop_grace + 60)
                for n in self.nodes:
                    if n.container in self._created:
                        self._save_log(n)
            if self._net_up or names or clients:
                # Also whatever carries this cluster's label but was never recorded (a create
                # or a paused-rule helper interrupted half-way).
                extra = self._docker("ps", "-a", "--format", "{{.Names}}", "--filter",
                                     f"label={LABEL}.cluster={self.tag}", check=False).stdout
                todo = list(dict.fromkeys([*names, *clients, *extra.split()]))
                if todo:
                    r = self._docker("rm", "-f", "-v", *todo, check=False, timeout=120)
                    if r.returncode != 0 and "No such container" not in r.stderr:
                        problems.append(f"docker rm: {r.stderr.strip()}")
            self._created.clear()
            self._clients.clear()
            self._links.clear()
            self._isolated_clients.clear()
            self._applied = {}
            if self._net_up:
                r = self._docker("network", "rm", self.network, check=False)
                if r.returncode != 0 and "No such network" not in r.stderr \
                        and "not found" not in r.stderr:
                    problems.append(f"docker network rm {self.network}: {r.stderr.strip()}")
                self._net_up = False
            if self._atexit_registered:
                atexit.unregister(self._atexit)
                self._atexit_registered = False
            self._invalidate()
        self.close_channels()
        if problems:
            raise ClusterError("docker cleanup incomplete: " + "; ".join(problems))

    def _atexit(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

    def _save_log(self, node: DockerNode) -> None:
        r = self._docker("logs", node.container, check=False, timeout=30)
        if r.returncode == 0:
            try:
                node.log_path.write_text(r.stdout + r.stderr)
            except OSError:
                pass

    def _wait_not_running(self, i: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self._states(fresh=True)[self.nodes[i].container].status in (
                "running", "paused", "restarting"):
            if time.monotonic() >= deadline:
                raise ClusterError(f"{self.nodes[i].name} still runs {timeout:.0f}s after kill")
            time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL node i's container (every process in it) and wait until it is down."""
        node = self.nodes[i]
        if node.container not in self._created:
            return
        node.stopped_by_harness = True
        st = self._state(node.container).status
        if st in ("running", "paused", "restarting"):
            self._docker("kill", "-s", "KILL", node.container, check=False)
            if st == "paused":     # a frozen task dies only once thawed
                self._docker("unpause", node.container, check=False)
        self._invalidate()
        self._wait_not_running(i)

    def terminate(self, i: int, *, grace: float | None = None) -> None:
        """`docker stop`: SIGTERM to node i, SIGKILL after `grace` (default stop_grace)."""
        node = self.nodes[i]
        if node.container not in self._created:
            return
        node.stopped_by_harness = True
        g = self.stop_grace if grace is None else grace
        st = self._state(node.container).status
        if st == "paused":
            self._docker("unpause", node.container, check=False)
        if st in ("running", "paused", "restarting"):
            self._docker("stop", "-t", str(int(max(0, g))), node.container, check=False,
                         timeout=g + 60)
        self._invalidate()
        self._wait_not_running(i)

    def pause(self, i: int) -> None:
        """`docker pause` (cgroup freezer): the node holds its sockets but answers nothing.

        The freezer gives up ("unable to freeze") when a task stays in uninterruptible sleep,
        e.g. inside fdatasync, for its whole timeout; runc then thaws the container again.
        So a refusal of that kind is retried a few times (bounded) before it is an error.
        """
        self._require_running(i)
        name = self.nodes[i].container
        for attempt in range(5):
            r = self._docker("pause", name, check=False)
            if r.returncode == 0:
                break
            why = (r.stderr or r.stdout).strip()
            if "unable to freeze" not in why or attempt == 4:
                raise ClusterError(f"`docker pause {name}` failed (exit {r.returncode}): {why}")
            time.sleep(0.1)
        self._invalidate()

    def resume(self, i: int) -> None:
        """`docker unpause`."""
        self._require_running(i)
        self._docker("unpause", self.nodes[i].container)
        self._invalidate()

    def restart(self, i: int) -> None:
        """Stop node i if it runs, then start its container again (same address and data)."""
        node = self.nodes[i]
        if node.container not in self._created:
            raise ClusterError(f"{node.name} was never started (call start())")
        if self.is_running(i):
            self.terminate(i)
        self._write_rules(node.container, self._desired_rules().get(node.container, frozenset()))
        node.stopped_by_harness = False
        self._docker("start", node.container)
        self._invalidate()

    def restart_all(self) -> None:
        """Stop every running node at once (one shared grace), then start them all again."""
        running = [n for n in self.nodes if self.is_running(n.index)]
        for n in running:
            n.stopped_by_harness = True
        paused = [n.container for n in running if self.is_paused(n.index)]
        if paused:
            self._docker("unpause", *paused, check=False)
        if running:
            self._docker("stop", "-t", str(int(max(1, self.stop_grace))),
                         *[n.container for n in running], check=False,
                         timeout=self.stop_grace + 60)
        self._invalidate()
        for n in self.nodes:
            self._write_rules(n.container, self._desired_rules().get(n.container, frozenset()))
            n.stopped_by_harness = False
        self._start_containers([n.container for n in self.nodes])

    def is_running(self, i: int) -> bool:
        """True while node i's container runs (paused counts)."""
        return self._state(self.nodes[i].container).status in ("running", "paused",
                                                               "restarting")

    def is_paused(self, i: int) -> bool:
        """True if node i's container is paused."""
        return self._state(self.nodes[i].container).status == "paused"

    def logs(self, i: int) -> str:
        """Node i's stdout and stderr over all its runs (`docker logs`, or the saved copy)."""
        node = self.nodes[i]
        if node.container in self._created:
            r = self._docker("logs", node.container, check=False, timeout=30)
            if r.returncode == 0:
                return r.stdout + r.stderr
        try:
            return node.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        """Raise NodeExitedError if a node's container stopped without the harness's doing."""
        gone = []
        states = self._states()
        for n in self.nodes:
            if n.container not in self._created or n.stopped_by_harness:
                continue
            st = states.get(n.container, _State("missing"))
            if st.status in ("exited", "dead", "missing", "created"):
                if st.status == "created":
                    continue       # between `docker create` and `docker start`
                n.stopped_by_harness = True
                how = ("removed by someone else" if st.status == "missing"
                       else f"exit {st.exit_code}" + (" (OOM-killed)" if st.oom else "")
                       + (f", {st.error}" if st.error else ""))
                gone.append(f"{n.name} ({n.container}, {n.grpc_address}) stopped: {how}; "
                            f"last lines of its log:\n{self.log_tail(n.index)}")
        if gone:
            raise NodeExitedError("\n".join(gone))

    def _require_running(self, i: int) -> None:
        if not self.is_running(i):
            raise ClusterError(f"{self.nodes[i].name} is not running")

    # ------------------------------------------------------------ network faults

    def partition(self, groups: list[list[int]]) -> None:
        links = partition_links(groups, len(self.nodes))
        self._require_network()
        self._links = links
        self._apply_rules()

    def block(self, src: int, dst: int) -> None:
        n = len(self.nodes)
        if not (0 <= src < n and 0 <= dst < n) or src == dst:
            raise ValueError(f"block: need two different nodes of {n}, got {src} -> {dst}")
        self._require_network()
        self._links.add((src, dst))
        self._apply_rules()

    def heal(self) -> None:
        if not self._net_up:
            return
        self._links.clear()
        self._isolated_clients.clear()
        self._apply_rules()

    def add_client_host(self, name: str) -> DockerClientHost:
        if name in self._clients:
            raise ValueError(f"client host {name!r} exists already")
        if len(self._clients) >= MAX_CLIENTS:
            raise ClusterError(f"at most {MAX_CLIENTS} client hosts")
        self._require_network()
        k = len(self._clients) + 1
        container = f"{self.network}-c{k}"
        ip = str(self.subnet[CLIENT_OCTET + k])
        host = DockerClientHost(name=name, ip=ip,
                                argv_prefix=[self.docker, "exec", "-i", "-w", "/", container],
                                container=container)
        ctl = self._ctl_dir(container)
        ctl.mkdir(parents=True, exist_ok=True)
        self._clients[name] = host
        self._write_rules(container, frozenset())
        self._docker("run", "-d", "--name", container, "--hostname", f"c{k}", *self._labels(),
                     "--network", self.network, "--ip", ip, "--init", "--cap-add", "NET_ADMIN",
                     "-v", f"{ctl}:{_CTL}:ro", "--entrypoint", "sleep", self.image, "infinity")
        self._created.add(container)
        self._invalidate()
        # The host's interpreter path, so `host.argv(sys.executable, ...)` runs the image's.
        exe = sys.executable
        if exe and exe.startswith("/") and not re.search(r"\s", exe):
            # A wrapper, not a symlink: Python finds its venv from the path it was run as.
            self._docker("exec", container, "sh", "-c",
                         f'[ -e "{exe}" ] || {{ mkdir -p "$(dirname "{exe}")" && '
                         f'printf \'#!/bin/sh\\nexec /opt/venv/bin/python "$@"\\n\' > "{exe}" && '
                         f'chmod 755 "{exe}"; }}', check=False)
        self._apply_rules()
        return host

    def client_host(self, name: str) -> DockerClientHost:
        return self._clients[name]

    @property
    def client_hosts(self) -> list[DockerClientHost]:
        """Every client host added since the network came up."""
        return list(self._clients.values())

    def isolate_client(self, name: str) -> None:
        if name not in self._clients:
            raise KeyError(f"no client host {name!r}")
        self._isolated_clients.add(name)
        self._apply_rules()

    @property
    def dropped_links(self) -> set[tuple[int, int]]:
        """The directed node links (src, dst) dropped right now."""
        return set(self._links)

    @property
    def isolated_clients(self) -> set[str]:
        """Names of the client hosts cut off right now."""
        return set(self._isolated_clients)

    def rules(self, container: str) -> str:
        """`iptables -S` inside one of this cluster's running containers (debugging, tests)."""
        return self._docker("exec", "-u", "0", container, "iptables", "-w", "5", "-S").stdout

    def _require_network(self) -> None:
        if not self._net_up:
            raise ClusterError("the docker cluster is not started")

    def _desired_rules(self) -> dict[str, frozenset[str]]:
        want: dict[str, set[str]] = {n.container: set() for n in self.nodes}
        want.update({c.container: set() for c in self._clients.values()})
        for src, dst in self._links:
            want[self.nodes[dst].container].add(self.nodes[src].ip)
        for name in self._isolated_clients:
            c = self._clients[name]
            for n in self.nodes:
                want[c.container].add(n.ip)
                want[n.container].add(c.ip)
        return {k: frozenset(v) for k, v in want.items()}

    def _write_rules(self, container: str, sources: Iterable[str]) -> None:
        ctl = self._ctl_dir(container)
        ctl.mkdir(parents=True, exist_ok=True)
        tmp = ctl / "fw.rules.tmp"
        tmp.write_text("".join(f"{ip}\n" for ip in sorted(sources)))
        os.replace(tmp, ctl / "fw.rules")

    def _apply_rules(self) -> None:
        """Bring every container's rules to the desired set; returns once they are in force.

        The rules file is rewritten for every container (a stopped one applies it when it
        starts); running containers get `docker exec lockd-fw`, paused ones a helper container
        sharing their network namespace. Containers are updated in parallel.
        """
        with self._lock:
            states = self._states(fresh=True)
            jobs: list[tuple[str, frozenset[str], subprocess.Popen]] = []
            for container, sources in self._desired_rules().items():
                if container not in self._created:
                    continue
                if self._applied.get(container) == sources:
                    status = states.get(container, _State("missing")).status
                    if status in ("running", "paused"):
                        continue
                self._write_rules(container, sources)
                self._applied.pop(container, None)
                status = states.get(container, _State("missing")).status
                if status == "running":
                    argv = [self.docker, "exec", "-u", "0", container, "lockd-fw",
                            f"{_CTL}/fw.rules"]
                elif status == "paused":
                    argv = [self.docker, "run", "--rm", "--network", f"container:{container}",
                            "--cap-add", "NET_ADMIN", "-u", "0",
                            "-v", f"{self._ctl_dir(container)}:{_CTL}:ro",
                            "--label", f"{LABEL}=1", "--label", f"{LABEL}.cluster={self.tag}",
                            "--label", f"{LABEL}.owner={self.owner}",
                            "--entrypoint", "lockd-fw", self.image, f"{_CTL}/fw.rules"]
                else:
                    continue       # not running: its entrypoint applies the file at start
                p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
                jobs.append((container, sources, p))
            problems = []
            for container, sources, p in jobs:
                try:
                    out, err = p.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
                    problems.append(f"{container}: lockd-fw did not finish within 60s")
                    continue
                if p.returncode == 0:
                    self._applied[container] = sources
                elif self._states(fresh=True).get(container, _State("missing")).status \
                        in ("running", "paused"):
                    problems.append(f"{container}: lockd-fw failed (exit {p.returncode}): "
                                    f"{(err or out).strip()}")
            if problems:
                raise ClusterError("could not apply the network faults: " + "; ".join(problems))

    def describe(self) -> str:
        return super().describe() + f"; network {self.network} {self.subnet}, image {self.image}"


__all__ = [
    "DEFAULT_IMAGE", "DockerClientHost", "DockerCluster", "DockerNode",
    "DockerUnavailableError", "build_image", "docker_problem", "image_exists", "labelled",
    "sweep_leftovers", "this_owner",
]
