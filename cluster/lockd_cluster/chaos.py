"""`python -m lockd_cluster.chaos`: seeded fault runs of lockd's workloads, with a report.

    python -m lockd_cluster.chaos --seed 7 --duration 60 --backend local --workload all --out DIR

prints the seed first, runs each workload on a fresh cluster under the nemesis (nemesis.py),
checks its history (checker.py), and writes

    DIR/report.json                 seed, backend, every workload's verdict, violations, figures
    DIR/<workload>/result.json      the same for one workload
    DIR/<workload>/history/*.jsonl  every client process's history (history.py)
    DIR/<workload>/faults.jsonl     the faults as they happened (plan.json: as planned)
    DIR/<workload>/cluster/nodeK/lockd.log   node logs (and data dirs, for the Raft log audit)
    DIR/<workload>/workers/*.log    the client processes' own output

then prints the verdict and exits 1 if any workload found a violation (2 on a harness error).
The same seed, duration, back-end and workload plan the same faults, so a failure replays.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

from lockd_cluster import disks  # noqa: E402
from lockd_cluster.base import WALL_OFFSET_FILE, Cluster  # noqa: E402
from lockd_cluster.local import LocalCluster  # noqa: E402
from lockd_cluster.nemesis import ALL_KINDS  # noqa: E402
from lockd_cluster.workloads import WORKLOAD_KINDS, WORKLOADS, Ctx  # noqa: E402

__all__ = ["make_cluster", "backend_available", "run_workload", "run", "main"]

BACKENDS = ("local", "netns", "docker")


def _backend_class(backend: str) -> type | None:
    """The Cluster subclass of a back-end module, or None if the module is not there."""
    if backend == "local":
        return LocalCluster
    try:
        mod = importlib.import_module(f"lockd_cluster.{backend}")
    except ImportError:
        return None
    for name in dir(mod):
        obj = getattr(mod, name)
        if (isinstance(obj, type) and issubclass(obj, Cluster) and obj is not Cluster
                and obj.__module__ == mod.__name__):
            return obj
    return None


def backend_available(backend: str) -> tuple[bool, str]:
    """(usable, why not): the module exists and its own check (if any) passes."""
    cls = _backend_class(backend)
    if cls is None:
        return False, f"lockd_cluster.{backend} does not exist (yet)"
    mod = importlib.import_module(cls.__module__)
    try:
        if backend == "netns" and hasattr(mod, "requirements_problem"):
            problem = mod.requirements_problem()
            if problem:
                return False, problem
        if backend == "docker" and hasattr(mod, "docker_problem"):
            problem = mod.docker_problem()
            if problem:
                return False, problem
            image = os.environ.get("LOCKD_DOCKER_IMAGE") or getattr(mod, "DEFAULT_IMAGE", "")
            if hasattr(mod, "image_exists") and not mod.image_exists(image):
                return False, f"docker image {image} missing (make docker-images)"
    except Exception as e:  # noqa: BLE001
        return False, f"{backend} check failed: {e}"
    check = getattr(cls, "available", None) or getattr(mod, "available", None)
    if callable(check):
        try:
            r = check()
        except Exception as e:  # noqa: BLE001
            return False, f"{backend} check failed: {e}"
        if isinstance(r, tuple):
            return bool(r[0]), str(r[1]) if len(r) > 1 else ""
        if not r:
            return False, f"{backend} is not usable on this machine"
    return True, ""


def make_cluster(backend: str, n: int, base_dir: Path, *,
                 small_disks: bool = False) -> tuple[Cluster, list[Path]]:
    """A fresh n-node cluster of the back-end, its data and logs under base_dir, and the
    mount points to `disks.unmount` once it has stopped.

    Its nodes take their wall clock from `--wall-clock-offset-file` (the `clock_step` fault).
    With `small_disks` (and root), every data dir is its own small tmpfs (the `disk_full`
    fault) and the nodes' --min-free-space fits it; without root the fault is skipped."""
    cls = _backend_class(backend)
    if cls is None:
        raise RuntimeError(f"back-end {backend!r} is not available")
    extra = ["--wall-clock-offset-file", WALL_OFFSET_FILE]
    small = small_disks and disks.can_mount()
    if small:
        extra += ["--min-free-space", disks.SMALL_DISK_FLOOR]
    cluster = cls(n, base_dir, extra_args=extra)
    return cluster, (disks.mount_small_disks(cluster) if small else [])


def _needs_small_disks(name: str, faults: list[str] | None) -> bool:
    """True if the workload's nemesis may fill a disk."""
    kinds = faults if faults else WORKLOAD_KINDS.get(name, ())
    return "disk_full" in kinds


def run_workload(name: str, *, seed: int, duration: float, backend: str, out: Path,
                 ttl: float = 3.0, clients: int = 4, nodes: int = 3, small: bool = False,
                 faults: list[str] | None = None, availability: str = "strict",
                 echo: Callable[[str], None] = print) -> dict:
    """Run one workload on a fresh cluster; always returns a result dict (never raises).

    `faults` replaces the nemesis mix of the workloads that use one (lockset, mutex);
    `availability="strict"` makes an unexplained leader change a violation (else reported)."""
    wdir = Path(out) / name
    wdir.mkdir(parents=True, exist_ok=True)
    cluster, mounts = make_cluster(backend, nodes, wdir / "cluster",
                                   small_disks=_needs_small_disks(name, faults))
    started = time.monotonic()
    # Each workload gets its own seed derived from the run's, so one can be replayed alone.
    wseed = seed if name == "all" else (seed * 1000003 + sum(map(ord, name))) % (1 << 31)
    try:
        cluster.start()
        ctx = Ctx(cluster=cluster, out=wdir, seed=wseed, duration=duration, ttl=ttl,
                  backend=backend, clients=clients, echo=echo, small=small,
                  nemesis_kinds=faults, availability=availability)
        res = WORKLOADS[name](ctx)
    except Exception as e:  # noqa: BLE001 - a harness failure is a result too
        res = {"workload": name, "valid": False, "error": f"{type(e).__name__}: {e}",
               "violations": [], "stats": {}, "traceback": traceback.format_exc()}
        (wdir / "result.json").write_text(json.dumps(res, indent=1, default=str))
    finally:
        try:
            cluster.stop()
        except Exception:  # noqa: BLE001
            pass
        disks.unmount(mounts)
    res["seed"] = wseed
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    return res


def run(*, seed: int, duration: float, backend: str, workloads: list[str], out: Path,
        ttl: float = 3.0, clients: int = 4, nodes: int = 3, small: bool = False,
        faults: list[str] | None = None, availability: str = "strict",
        echo: Callable[[str], None] = print) -> dict:
    """Run several workloads; write and return the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"seed": seed, "duration": duration, "backend": backend, "ttl": ttl,
              "nodes": nodes, "clients": clients, "faults": faults,
              "availability": availability, "workloads": {}}
    for name in workloads:
        echo(f"=== {name} (seed {seed}, {duration:.0f}s, {backend})")
        res = run_workload(name, seed=seed, duration=duration, backend=backend, out=out,
                           ttl=ttl, clients=clients, nodes=nodes, small=small, faults=faults,
                           availability=availability, echo=echo)
        report["workloads"][name] = res
        verdict = "PASS" if res["valid"] else ("ERROR" if res.get("error") else "FAIL")
        echo(f"=== {name}: {verdict} in {res['elapsed_s']}s")
        for v in res.get("violations", [])[:20]:
            echo(f"    violation: {v}")
        av = res.get("availability") or {}
        if av.get("violations") and availability != "strict":
            echo(f"    availability (report only): {len(av['violations'])} unexplained leader "
                 f"change(s) of {av['stats'].get('leader_changes')}")
        if res.get("error"):
            echo(f"    error: {res['error']}")
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    report["valid"] = all(r["valid"] for r in report["workloads"].values())
    report["errors"] = [n for n, r in report["workloads"].items() if r.get("error")]
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lockd_cluster.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a new one)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of faults per workload (default 60)")
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--workload", default="all",
                   help="all, or a comma list of: " + ", ".join(WORKLOADS))
    p.add_argument("--out", default=None, help="report directory (default chaos-out/SEED)")
    p.add_argument("--ttl", type=float, default=3.0, help="session TTL of the clients (s)")
    p.add_argument("--clients", type=int, default=4, help="client processes per workload")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--small", action="store_true", help="fewer repetitions (the CI variant)")
    p.add_argument("--faults", default=None,
                   help="comma list of nemesis faults for lockset and mutex (default: each "
                        "workload's own mix); one of: " + ", ".join(ALL_KINDS))
    p.add_argument("--availability", choices=("strict", "report"), default="strict",
                   help="a leader change no fault on the leader explains: a violation "
                        "(strict, the default) or only reported (report)")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    print(f"seed {seed}", flush=True)
    names = list(WORKLOADS) if a.workload == "all" else [w.strip() for w in a.workload.split(",")]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s): {', '.join(unknown)}")
    faults = None
    if a.faults:
        faults = [k.strip() for k in a.faults.split(",") if k.strip()]
        bad = [k for k in faults if k not in ALL_KINDS]
        if bad or not faults:
            what = ", ".join(bad) if bad else repr(a.faults)
            p.error(f"unknown fault(s): {what}; choose from " + ", ".join(ALL_KINDS))
    ok, why = backend_available(a.backend)
    if not ok:
        print(f"back-end {a.backend} unavailable: {why}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path("chaos-out") / f"{a.backend}-{seed}"
    print(f"report directory {out}", flush=True)

    def echo(s: str) -> None:
        print(s, flush=True)

    report = run(seed=seed, duration=a.duration, backend=a.backend, workloads=names, out=out,
                 ttl=a.ttl, clients=a.clients, nodes=a.nodes, small=a.small, faults=faults,
                 availability=a.availability, echo=echo)
    parts = ", ".join(f"{n}={'ok' if r['valid'] else 'FAIL'}"
                      for n, r in report["workloads"].items())
    print(f"seed {seed}: {'PASS' if report['valid'] else 'FAIL'} ({parts}); "
          f"report {out / 'report.json'}", flush=True)
    if report["valid"]:
        return 0
    return 2 if report["errors"] and all(
        not r["violations"] for r in report["workloads"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
