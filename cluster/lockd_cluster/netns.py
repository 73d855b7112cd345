"""NetnsCluster: N `lockd serve` nodes, each in its own Linux network namespace.

Needs root, iproute2 (`ip`) and `iptables` (Debian: `apt-get install iproute2 iptables`); no
Docker, no image. Layout, for a cluster tagged TAG (6 random hex digits) and owned by PID:

    lkn-TAG-PID-sw          a "switch" namespace holding bridge br0
    lkn-TAG-PID-n1 .. nN    node k: eth0 = 10.X.Y.k/24, veth to port nk of br0
    lkn-TAG-PID-c1 ..       client hosts: eth0 = 10.X.Y.(100+k)/24, veth to port ck
    lknTAG (root ns)        the harness host: 10.X.Y.254/24, veth to port host of br0

10.X.Y.0/24 is derived from TAG (X in 128..255) and checked against every route and address
of the host, so it is used by these namespaces only. Namespaces have no default route:
nothing in them can reach anything but each other and the harness host. The bridge is in its
own namespace, so the host's firewall (e.g. Docker's FORWARD DROP) never sees node traffic.

Nodes listen on their namespace address (gRPC port 7001, Raft 7101 by default); Raft traffic
is encrypted with a random password written to `base_dir/raft-password` (a node refuses
non-loopback Raft without one). `endpoints` lists the namespace addresses, which the harness
host reaches directly.

Faults are iptables DROP rules in the INPUT chain of the receiving namespace (so packets are
lost silently, never refused): a dropped link src->dst is a rule `-s IP(src)` in dst's
namespace. Each namespace's filter table is rewritten whole with `iptables-restore`, and only
when its rule set changes.

Cleanup: `stop()` stops the nodes (as LocalCluster does), SIGKILLs by PID whatever still runs
inside this cluster's namespaces, deletes the host veth and every namespace (the veths, the
bridge and the iptables rules live inside them and go with them). `start()` first sweeps
leftovers of earlier runs: namespaces named `lkn-*-PID-*` whose PID is gone, and `lknTAG`
links without a live namespace. An `atexit` hook tears down a cluster that was not stopped.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lockd_cluster.base import ClientHost, Cluster, ClusterError, partition_links
from lockd_cluster.local import LocalCluster, LocalNode

PREFIX = "lkn"
_NS_RE = re.compile(rf"^{PREFIX}-([0-9a-f]{{6}})-(\d+)-(sw|n\d+|c\d+)$")
_LINK_RE = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})$")
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
HOST_OCTET = 254
CLIENT_BASE = 100
MAX_NODES = CLIENT_BASE - 1
MAX_CLIENTS = HOST_OCTET - CLIENT_BASE - 1


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def requirements_problem() -> str | None:
    """Why this machine cannot run a NetnsCluster (None if it can): root, ip, iptables."""
    missing = []
    if os.geteuid() != 0:
        missing.append(f"root (running as uid {os.geteuid()})")
    if not sys.platform.startswith("linux"):
        missing.append("Linux")
    for tool, pkg in (("ip", "iproute2"), ("iptables", "iptables"),
                      ("iptables-restore", "iptables")):
        if _tool(tool) is None:
            missing.append(f"`{tool}` (Debian package {pkg})")
    if not missing:
        return None
    return "the netns cluster back-end needs " + ", ".join(missing)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Net:
    """Thin wrappers over `ip` and `iptables`; every call is bounded and checked."""

    def __init__(self) -> None:
        problem = requirements_problem()
        if problem:
            raise ClusterError(problem)
        self.ip = _tool("ip")
        self.iptables_restore = _tool("iptables-restore")

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = 20.0) -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout, stdin=None if input is not None
                               else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"`{' '.join(argv)}` did not finish within {timeout}s") from None
        if check and r.returncode != 0:
            raise ClusterError(f"`{' '.join(argv)}` failed (exit {r.returncode}): "
                               f"{(r.stderr or r.stdout).strip()}")
        return r

    def ipc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(self.ip, *args, check=check)

    def netns_list(self) -> list[str]:
        out = self.ipc("netns", "list").stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def links(self) -> list[str]:
        out = self.ipc("-o", "link", "show").stdout
        names = []
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) >= 2:
                names.append(parts[1].strip().split("@")[0])
        return names

    def netns_pids(self, ns: str) -> list[int]:
        r = self.ipc("netns", "pids", ns, check=False)
        return [int(p) for p in r.stdout.split() if p.isdigit()]

    def exec_argv(self, ns: str) -> list[str]:
        return [self.ip, "netns", "exec", ns]

    def restore(self, ns: str, drop_sources: Iterable[str]) -> None:
        """Replace ns's filter table: INPUT drops packets from every address given."""
        lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                 ":OUTPUT ACCEPT [0:0]"]
        lines += [f"-A INPUT -s {a}/32 -j DROP" for a in sorted(drop_sources)]
        lines.append("COMMIT")
        self.run(*self.exec_argv(ns), self.iptables_restore, "-w", "5",
                 input="\n".join(lines) + "\n")

    def rules(self, ns: str) -> str:
        """`iptables -S` inside ns (for tests and debugging)."""
        return self.run(*self.exec_argv(ns), _tool("iptables") or "iptables", "-w", "5",
                        "-S").stdout

    def kill_pids_in(self, ns: str, skip: Iterable[int] = ()) -> list[int]:
        """SIGKILL every process still inside ns (they were started in our namespace)."""
        skipped = set(skip) | {os.getpid()}
        killed = []
        for pid in self.netns_pids(ns):
            if pid in skipped:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        return killed

    def delete_namespaces(self, names: Sequence[str], links: Sequence[str] = ()) -> list[str]:
        """Kill what runs inside, delete the links then the namespaces; problems as text."""
        problems = []
        for ns in names:
            self.kill_pids_in(ns)
        for link in links:
            r = self.ipc("link", "del", link, check=False)
            if r.returncode != 0 and "Cannot find device" not in r.stderr \
                    and "does not exist" not in r.stderr:
                problems.append(f"ip link del {link}: {r.stderr.strip()}")
        for ns in names:
            for _ in range(50):  # a SIGKILLed process leaves the namespace when it is reaped
                if not self.netns_pids(ns):
                    break
                time.sleep(0.02)
            r = self.ipc("netns", "del", ns, check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        return problems


def sweep_leftovers(net: _Net | None = None) -> list[str]:
    """Remove namespaces and host links of NetnsClusters whose owner process is gone.

    Only names of this back-end's pattern (`lkn-TAG-PID-…`, `lknTAG`) are touched; a cluster
    whose PID is alive (this process's or a concurrent run's) is left alone. Returns what was
    removed.
    """
    net = net or _Net()
    links = [l for l in net.links() if _LINK_RE.match(l)]   # links first: see below
    live_tags: set[str] = set()
    dead: dict[str, list[str]] = {}
    for ns in net.netns_list():
        m = _NS_RE.match(ns)
        if not m:
            continue
        tag, pid = m.group(1), int(m.group(2))
        if _pid_alive(pid):
            live_tags.add(tag)
        else:
            dead.setdefault(tag, []).append(ns)
    # A live cluster creates its namespaces before its host link, and the links were listed
    # before the namespaces: a listed link of a live cluster has its tag in live_tags.
    removed: list[str] = []
    stale_links = [l for l in links if _LINK_RE.match(l).group(1) not in live_tags]
    for tag, names in dead.items():
        net.delete_namespaces(names, [f"{PREFIX}{tag}"])
        removed += names
    for link in stale_links:
        net.ipc("link", "del", link, check=False)
        removed.append(link)
    return removed


@dataclass
class NetnsNode(LocalNode):
    """A node run in its own network namespace (`namespace`) at address `ip`."""

    namespace: str = ""
    ip: str = ""


@dataclass
class NetnsClientHost(ClientHost):
    """A client host: a network namespace on the cluster's bridge."""

    namespace: str = ""


class NetnsCluster(LocalCluster):
    """N lockd nodes, one per network namespace, on a private bridge; supports partitions.

    Same verbs and semantics as LocalCluster (the processes are its children, signalled by
    PID), plus the network faults of `Cluster`. Node k listens on 10.X.Y.(k+1):`grpc_port`
    (gRPC) and :`raft_port` (Raft). Raises ClusterError at construction if the machine lacks
    root, `ip` or `iptables`.
    """

    supports_partitions = True

    def __init__(self, n: int, base_dir: str | os.PathLike, *, extra_args: Sequence[str] = (),
                 log_level: str = "info", die_with_parent: bool = True,
                 stop_grace: float = 10.0, grpc_port: int = 7001, raft_port: int = 7101,
                 tag: str | None = None) -> None:
        # Not LocalCluster.__init__: it would pick loopback ports.
        Cluster.__init__(self)
        if not 1 <= n <= MAX_NODES:
            raise ValueError(f"a netns cluster has 1..{MAX_NODES} nodes, not {n}")
        if grpc_port == raft_port:
            raise ValueError("gRPC and Raft need different ports")
        self._net = _Net()
        self.base_dir = Path(base_dir)
        self.extra_args = tuple(extra_args)
        self.log_level = log_level
        self.die_with_parent = die_with_parent
        self.stop_grace = stop_grace
        self.tag, self.subnet = self._pick_subnet(tag)
        self.prefix = f"{PREFIX}-{self.tag}-{os.getpid()}"
        self.switch_ns = f"{self.prefix}-sw"
        self.host_link = f"{PREFIX}{self.tag}"
        self.host_ip = str(self.subnet[HOST_OCTET])
        self.password_file = self.base_dir / "raft-password"
        self.nodes: list[NetnsNode] = []
        for k in range(n):
            ip = str(self.subnet[k + 1])
            self.nodes.append(NetnsNode(
                index=k, raft_address=f"{ip}:{raft_port}", grpc_address=f"{ip}:{grpc_port}",
                data_dir=self.base_dir / f"node{k + 1}", namespace=f"{self.prefix}-n{k + 1}",
                ip=ip))
        self._clients: dict[str, NetnsClientHost] = {}
        self._links: set[tuple[int, int]] = set()       # dropped directed node links
        self._isolated_clients: set[str] = set()
        self._applied: dict[str, frozenset[str]] = {}   # namespace -> dropped source IPs
        self._net_up = False
        self._atexit_registered = False

    # ------------------------------------------------------------ set-up helpers

    def _pick_subnet(self, tag: str | None) -> tuple[str, ipaddress.IPv4Network]:
        """A tag and its 10.X.Y.0/24 that overlaps no route or address of this host."""
        used = self._host_networks()
        for attempt in range(64):
            t = tag if tag is not None else secrets.token_hex(3)
            if not re.fullmatch(r"[0-9a-f]{6}", t):
                raise ValueError(f"tag must be 6 lowercase hex digits, got {t!r}")
            v = int(t, 16)
            net = ipaddress.ip_network(f"10.{128 + (v >> 8) % 128}.{v & 0xFF}.0/24")
            if not any(net.overlaps(u) for u in used):
                return t, net
            if tag is not None:
                raise ClusterError(f"subnet {net} of tag {tag} is already routed on this host")
        raise ClusterError("found no free 10.X.Y.0/24 for the netns cluster")

    def _host_networks(self) -> list[ipaddress.IPv4Network]:
        nets = []
        for args in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
            out = self._net.ipc(*args, check=False).stdout
            for tok in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", out):
                try:
                    n = ipaddress.ip_network(tok, strict=False)
                except ValueError:
                    continue
                if n.prefixlen > 0:     # a default route overlaps everything: not "used"
                    nets.append(n)
        return nets

    def _all_namespaces(self) -> list[str]:
        return ([self.switch_ns] + [n.namespace for n in self.nodes]
                + [c.namespace for c in self._clients.values()])

    def _attach(self, ns: str, port: str, ip: str) -> None:
        """Create namespace ns with eth0 = ip/24, plugged into bridge port `port`."""
        ipc = self._net.ipc
        ipc("netns", "add", ns)
        ipc("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
            "netns", self.switch_ns)
        ipc("-n", self.switch_ns, "link", "set", port, "master", "br0", "up")
        ipc("-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        ipc("-n", ns, "link", "set", "eth0", "up")
        ipc("-n", ns, "link", "set", "lo", "up")

    def _ensure_network(self) -> None:
        if self._net_up:
            return
        sweep_leftovers(self._net)
        if not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        self._net_up = True        # from here on, teardown has something to remove
        ipc = self._net.ipc
        try:
            ipc("netns", "add", self.switch_ns)
            ipc("-n", self.switch_ns, "link", "add", "br0", "type", "bridge")
            ipc("-n", self.switch_ns, "link", "set", "br0", "up")
            ipc("-n", self.switch_ns, "link", "set", "lo", "up")
            for n in self.nodes:
                self._attach(n.namespace, f"n{n.index + 1}", n.ip)
            ipc("link", "add", self.host_link, "type", "veth", "peer", "name", "host",
                "netns", self.switch_ns)
            ipc("-n", self.switch_ns, "link", "set", "host", "master", "br0", "up")
            ipc("addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.host_link)
            ipc("link", "set", self.host_link, "up")
            self._applied = {}
            # Proves iptables works in a namespace on this kernel before any node starts.
            self._apply_rules(force=True)
        except BaseException:
            self._teardown_network()
            raise

    def _teardown_network(self) -> list[str]:
        if not self._net_up:
            return []
        problems = self._net.delete_namespaces(self._all_namespaces(), [self.host_link])
        self._net_up = False
        self._clients.clear()
        self._links.clear()
        self._isolated_clients.clear()
        self._applied = {}
        return problems

    def _atexit(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

    def _ensure_password(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")

    # ------------------------------------------------------------ process verbs

    def command(self, i: int) -> list[str]:
        """The argv that runs node i (inside its namespace, via `ip netns exec`)."""
        node = self.nodes[i]
        peers = ",".join(n.raft_address for n in self.nodes if n.index != i)
        return [*self._net.exec_argv(node.namespace),
                sys.executable, "-m", "lockd", "serve",
                "--raft-password-file", str(self.password_file),
                "--raft-address", node.raft_address,
                "--grpc-address", node.grpc_address,
                "--peers", peers,
                "--data-dir", str(node.data_dir),
                "--log-format", "json",
                "--log-level", self.log_level,
                *self.extra_args]

    def start(self) -> None:
        """Build the network (first sweeping leftovers), then start every stopped node."""
        self._ensure_password()
        self._ensure_network()
        for n in self.nodes:
            if not self.is_running(n.index):
                self._spawn(n)

    def stop(self) -> None:
        """Stop every node (as LocalCluster), then remove every namespace, link and rule."""
        try:
            super().stop()
        finally:
            problems = self._teardown_network()
            if self._atexit_registered:
                atexit.unregister(self._atexit)
                self._atexit_registered = False
        if problems:
            raise ClusterError("netns cleanup incomplete: " + "; ".join(problems))

    def restart(self, i: int) -> None:
        """Stop node i if it runs, then start it again (same namespace, address, data)."""
        if self.is_running(i):
            self.terminate(i)
        self._ensure_password()
        self._ensure_network()
        self._spawn(self.nodes[i])

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

    def add_client_host(self, name: str) -> NetnsClientHost:
        if name in self._clients:
            raise ValueError(f"client host {name!r} exists already")
        if len(self._clients) >= MAX_CLIENTS:
            raise ClusterError(f"at most {MAX_CLIENTS} client hosts")
        self._ensure_network()
        k = len(self._clients) + 1
        ns = f"{self.prefix}-c{k}"
        ip = str(self.subnet[CLIENT_BASE + k])
        host = NetnsClientHost(name=name, ip=ip, argv_prefix=self._net.exec_argv(ns),
                               namespace=ns)
        self._clients[name] = host     # before _attach: teardown must remove a half-made one
        self._attach(ns, f"c{k}", ip)
        self._apply_rules()
        return host

    def client_host(self, name: str) -> NetnsClientHost:
        return self._clients[name]

    @property
    def client_hosts(self) -> list[NetnsClientHost]:
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

    def rules(self, namespace: str) -> str:
        """`iptables -S` inside one of this cluster's namespaces (debugging, tests)."""
        return self._net.rules(namespace)

    def _require_network(self) -> None:
        if not self._net_up:
            raise ClusterError("the netns cluster is not started")

    def _desired_rules(self) -> dict[str, frozenset[str]]:
        want: dict[str, set[str]] = {ns: set() for ns in
                                     [n.namespace for n in self.nodes]
                                     + [c.namespace for c in self._clients.values()]}
        for src, dst in self._links:
            want[self.nodes[dst].namespace].add(self.nodes[src].ip)
        for name in self._isolated_clients:
            c = self._clients[name]
            for n in self.nodes:
                want[c.namespace].add(n.ip)
                want[n.namespace].add(c.ip)
        return {ns: frozenset(s) for ns, s in want.items()}

    def _apply_rules(self, *, force: bool = False) -> None:
        for ns, sources in self._desired_rules().items():
            if force or self._applied.get(ns) != sources:
                self._applied.pop(ns, None)      # unknown until the restore succeeded
                self._net.restore(ns, sources)
                self._applied[ns] = sources
