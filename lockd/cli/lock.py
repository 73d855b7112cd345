"""`lockd lock NAME -- CMD`: run a command while holding a lock, and stop it if the lock is lost.

CMD runs in its own process group (`lockd.local.procs`: parent-death signal, group signals);
signals are forwarded to it, and its exit status becomes lockd's. The lock is lost when the
session is (LOST, EXPIRED: e.g. `lockd sessions kill`) or when an operator force-releases it;
a revocation request (`lockd locks revoke`) becomes `--revoke-signal` to CMD's group.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import click

from lockd.cli._common import (
    EPILOG, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SESSION_LOST, EXIT_SIGNAL_BASE,
    EXIT_WAIT_TIMEOUT, CliError, Globals, client_errors, connect, endpoints_option,
    handle_signals, raise_interrupted, settings, warn)


@contextlib.contextmanager
def _foreground(pgid: int) -> Iterator[None]:
    """Give the terminal to CMD's process group while it runs (if we own the terminal).

    CMD runs in its own process group; without this, a CMD that reads the terminal would be
    stopped by SIGTTIN while we hold the lock.
    """
    try:
        owns_terminal = os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        owns_terminal = False
    if not owns_terminal:
        yield
        return
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)   # tcsetpgrp from a background group
    try:
        os.tcsetpgrp(0, pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)   # in case it read the terminal before the hand-off
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(0, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)


def _exit_status(rc: int) -> int:
    """Shell convention: a CMD killed by signal N gives 128+N."""
    return rc if rc >= 0 else EXIT_SIGNAL_BASE - rc


def parse_signal(text: str) -> int | None:
    """A signal given by name (`TERM`, `SIGUSR1`, any case) or number; None for `none`.

    Raises ValueError with a message for people.
    """
    t = text.strip().upper()
    if t in ("NONE", "OFF", "0"):
        return None
    if t.isdigit():
        try:
            return int(signal.Signals(int(t)))
        except ValueError:
            raise ValueError(f"no signal number {t}") from None
    name = t if t.startswith("SIG") else f"SIG{t}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r} (use a name such as TERM, USR1, HUP, "
                         "a number, or none)") from None


class _SignalParam(click.ParamType):
    name = "SIGNAL"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or isinstance(value, int):
            return value
        try:
            return parse_signal(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _client_name() -> str:
    """Who holds the lock, for `lockd locks`: user, host and pid (<= 128 bytes)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"lockd-lock {user}@{socket.gethostname()} pid {os.getpid()}"[:128]


@click.command(epilog=EPILOG)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD...")
@click.option("--ttl", envvar="LOCKD_TTL", show_envvar=True, type=click.FloatRange(1, 3600),
              default=10.0, show_default=True, metavar="SECONDS",
              help="Session TTL: how long after the last keepalive the lock is freed.")
@click.option("--wait", type=click.FloatRange(0, 3600), default=None, metavar="SECONDS",
              help="Give up after this long (exit 4); 0 tries once. Default: wait forever.")
@click.option("--shared", is_flag=True, help="Take the lock in SHARED mode.")
@click.option("--value", default=None, metavar="TEXT",
              help="Text attached to the grant (<= 1 KiB), shown by `lockd locks`.")
@click.option("--kill-grace", envvar="LOCKD_KILL_GRACE", show_envvar=True,
              type=click.FloatRange(0, 600), default=5.0, show_default=True, metavar="SECONDS",
              help="After the lock is lost: time between SIGTERM and SIGKILL to CMD.")
@click.option("--revoke-signal", envvar="LOCKD_REVOKE_SIGNAL", show_envvar=True,
              type=_SignalParam(), default="TERM", show_default=True,
              help="Sent to CMD's group when someone asks for the lock (`lockd locks "
                   "revoke`): a name (TERM, USR1, HUP...), a number, or none to ignore.")
@endpoints_option()
@click.pass_context
def lock(ctx: click.Context, name: str, command: tuple[str, ...], ttl: float,
         wait: float | None, shared: bool, value: str | None, kill_grace: float,
         revoke_signal: int | None, endpoints: str | None) -> None:
    """Run CMD while holding lock NAME; exit with CMD's status.

    \b
    CMD runs in its own process group with LOCKD_TOKEN (the fencing token) and LOCKD_LOCK
    (NAME) in its environment. SIGINT, SIGTERM and SIGHUP are forwarded to that group. The
    lock is released when CMD exits. If the lock is lost (keepalives unanswered for TTL, the
    cluster expired or an operator killed the session, or an operator force-released the
    lock), CMD's group gets SIGTERM at once, SIGKILL after --kill-grace, and lockd exits 5.
    If someone asks for the lock (`lockd locks revoke NAME`), CMD's group gets
    --revoke-signal once (default SIGTERM; the lock stays held until CMD exits). If lockd
    itself is killed, CMD gets SIGKILL (Linux parent-death signal; it covers CMD itself, so
    `exec` long-running programs from shell wrappers).

    \b
    Example:  lockd lock --wait 30 jobs/nightly -- ./nightly.sh --full
    """
    g = settings(ctx, endpoints)
    if value is not None and len(value.encode()) > 1024:
        raise click.BadParameter("at most 1 KiB", param_hint="'--value'")
    with handle_signals(raise_interrupted):
        try:
            code = _run_locked(g, name, list(command), ttl=ttl, wait=wait, shared=shared,
                               value=value, kill_grace=kill_grace, revoke_signal=revoke_signal)
        except KeyboardInterrupt as e:   # Interrupted, or SIGINT before our handler
            signum = getattr(e, "signum", signal.SIGINT)
            warn(f"interrupted by {signal.Signals(signum).name}")
            code = EXIT_SIGNAL_BASE + signum
    sys.exit(code)


def _run_locked(g: Globals, name: str, command: list[str], *, ttl: float, wait: float | None,
                shared: bool, value: str | None, kill_grace: float,
                revoke_signal: int | None = signal.SIGTERM) -> int:
    """Open a session, take the lock, run CMD under it; returns lockd's exit status."""
    import lockd_client

    lost = threading.Event()          # the session is LOST or EXPIRED
    wake = threading.Event()          # something for the main loop to look at
    suspended = threading.Event()
    revoked = threading.Event()       # someone asked for the lock (a REVOKE_REQUESTED notice)

    def on_state(state: lockd_client.SessionState) -> None:  # client thread: must not block
        if state in (lockd_client.SessionState.LOST, lockd_client.SessionState.EXPIRED):
            lost.set()
        elif state is lockd_client.SessionState.SUSPENDED:
            suspended.set()
        else:
            suspended.clear()
        wake.set()

    with client_errors(g), connect(g) as client:
        session = client.session(ttl=ttl, name=_client_name())
        try:
            session.add_listener(on_state)
            lk = session.lock(name, shared=shared, value=value or b"")
            lk.on_lost(lambda _lock: wake.set())      # also a force-release: lk.lost is set
            lk.on_revoke(lambda _lock: (revoked.set(), wake.set()))
            if not lk.acquire(blocking=True, timeout=-1 if wait is None else wait):
                raise CliError(f"timed out after {wait:g}s waiting for lock {name!r}",
                               EXIT_WAIT_TIMEOUT)
            if lost.is_set() or lk.lost.is_set():
                raise CliError(f"session lost right after {name!r} was granted",
                               EXIT_SESSION_LOST)
            code = _supervise(lk, name, command, lost, wake, suspended, kill_grace,
                              revoked=revoked, revoke_signal=revoke_signal)
            if code != EXIT_SESSION_LOST:
                try:
                    lk.release()
                except lockd_client.LockdError as e:
                    warn(f"warning: could not release {name!r}: {e}")
            return code
        finally:
            with contextlib.suppress(Exception):
                session.close()


def _supervise(lk: Any, name: str, command: list[str], lost: threading.Event,
               wake: threading.Event, suspended: threading.Event, kill_grace: float, *,
               revoked: threading.Event | None = None,
               revoke_signal: int | None = signal.SIGTERM) -> int:
    """Start CMD holding `lk`, forward signals, watch the session and the lock; returns the
    exit status."""
    from lockd.local.procs import die_with_parent, group_alive, signal_group

    pgid: int | None = None
    pending: list[int] = []      # signals that came before CMD's process group existed

    def forward(signum: int, frame: Any) -> None:
        if pgid is None:
            pending.append(signum)
        else:
            signal_group(pgid, signum)

    # Forwarding is installed before CMD starts: a signal in between must not be lost, nor
    # kill lockd (which would leave CMD to PR_SET_PDEATHSIG alone).
    with handle_signals(forward):
        if pending:
            warn(f"interrupted ({signal.Signals(pending[0]).name}) before the command started")
            return EXIT_SIGNAL_BASE + pending[0]
        env = dict(os.environ, LOCKD_TOKEN=str(lk.token), LOCKD_LOCK=name)
        try:
            proc = subprocess.Popen(command, env=env, process_group=0,
                                    preexec_fn=die_with_parent(signal.SIGKILL))
        except FileNotFoundError:
            warn(f"error: command not found: {command[0]}")
            return EXIT_NOT_FOUND
        except PermissionError:
            warn(f"error: command not executable: {command[0]}")
            return EXIT_NOT_EXECUTABLE
        except OSError as e:
            warn(f"error: cannot run {command[0]}: {e.strerror or e}")
            return EXIT_NOT_EXECUTABLE
        pgid = proc.pid
        for signum in pending:
            signal_group(pgid, signum)
        done = threading.Event()

        def reap() -> None:
            proc.wait()
            done.set()
            wake.set()

        threading.Thread(target=reap, name="lockd-lock-reaper", daemon=True).start()

        warned = False
        revoke_handled = False
        token = lk.token
        with _foreground(pgid):
            while not done.is_set():
                wake.wait(0.5)
                wake.clear()
                if (lost.is_set() or lk.lost.is_set()) and not done.is_set():
                    break
                if revoked is not None and revoked.is_set() and not revoke_handled:
                    revoke_handled = True
                    if revoke_signal is None:
                        warn(f"revoke requested for {name!r} (token {token}): ignored "
                             "(--revoke-signal none)")
                    else:
                        warn(f"revoke requested for {name!r} (token {token}): sending "
                             f"{_signal_name(revoke_signal)} to the command")
                        signal_group(pgid, revoke_signal)
                if suspended.is_set() and not warned:
                    warn(f"warning: keepalives overdue; {name!r} may be lost soon")
                    warned = True
                elif not suspended.is_set():
                    warned = False
        if done.is_set():
            return _exit_status(proc.returncode)

        # Lock lost while CMD runs. The client reports LOST before the cluster can expire
        # the session and grant the lock to someone else: stop CMD now. A force-release by an
        # operator has already freed the lock (the next holder's token fences ours): stop CMD
        # just as fast.
        # The lock's `lost` is set before the session's listeners run: ask the session itself
        # whether it ended (it did, for a kill or an expiry) or only this grant went.
        if lost.is_set() or lk.session.state.terminal:
            warn(f"session lost while holding {name!r}: sending SIGTERM to the command "
                 f"(SIGKILL in {kill_grace:g}s)")
        else:
            warn(f"lock {name!r} was force-released by an operator (token {token} is stale): "
                 f"sending SIGTERM to the command (SIGKILL in {kill_grace:g}s)")
        signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + kill_grace
        done.wait(kill_grace)
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if signal_group(pgid, signal.SIGKILL):
            warn("sent SIGKILL to the command's process group")
        done.wait(5.0)
        return EXIT_SESSION_LOST
