"""One registry served by several processes (`http.workers`), so that it uses every core.

The supervisor, the process `moorage serve` started, builds the server once to check it (the
same one-line errors as a single process), binds every listener (so an address in use fails
once, before any worker runs), makes a run directory for what the workers share, and forks the
workers. From then on it only watches: SIGTERM and SIGINT are passed on, and each worker drains
as a single server does; a worker that dies is started again; the run directory goes when the
last worker has stopped (or, when the supervisor and its workers were all killed, at the next
start: see make_rundir).

What the workers share:
- the listeners: on TCP, one socket per worker and address, all with SO_REUSEPORT, so the kernel
  spreads connections over the workers; a unix socket is one socket for all;
- metrics: files in the run directory (moorage/metrics.py), so /metrics sums every worker;
- the in-memory descriptor cache's generation (storage/cache/generation.py), so a delete in one
  worker drops what the others cached;
- catalog names each adds (registry/catalog.py FileNames), unless Redis already shares them.
With notification endpoints, one more process, the notifier, runs beside the workers at a lower
priority: each worker spools the events of its requests, the notifier merges every worker's spool
and delivers (moorage.notifications); it is started again if it dies, like a worker.
Upload sessions need nothing: the running digest's state is saved with the session in storage
after each chunk (registry/uploads.py), so another worker continues it, as another replica does.
What stays per worker: the token server's rate limits (each worker allows the configured rate)
and the storage health checks (each worker checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import gc
import logging
import math
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from moorage.config.schema import Config
from moorage.config.secrets import Redactor, SecretProblem
from moorage.registry import hashstate
from moorage.server import Server, StartupError, Worker, serve, split_addr

log = logging.getLogger("moorage")

BACKLOG = 1024
PR_SET_PDEATHSIG = 1  # prctl(2)
STARTUP_FAILED = 3  # a worker's exit status when it could not start: the supervisor stops
NOTIFIER = -1  # the index of the process that delivers notifications
NOTIFIER_NICE = 19  # its priority below the workers': delivery yields to requests
RESTART_PAUSE = 1.0  # seconds before restarting a worker that died this soon after its start
_STOPPING = {signal.SIGINT, signal.SIGTERM}  # what the supervisor passes on, and stops by
_SIGNALS = {*_STOPPING, signal.SIGCHLD}
RUNDIR_PREFIX = "moorage-"
RUNDIR_LOCK = "supervisor.lock"


def usable_cpus() -> int:
    """The CPUs this process may run on, bounded by the tightest CPU quota on its cgroups (a
    container's `--cpus`, a systemd unit's `CPUQuota=`) when there is one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return cpus if quota is None else min(cpus, max(1, math.ceil(quota)))


def cpu_quota(root: str = "/sys/fs/cgroup", membership: str = "/proc/self/cgroup") -> float | None:
    """The tightest CPU quota, in CPUs, on this process's cgroup and those above it, cgroup v2
    (`cpu.max`) or v1 (`cpu.cfs_quota_us` over `cpu.cfs_period_us`); None when there is none or
    none is readable. A container's own cgroup is the root of the hierarchy it sees mounted,
    whatever path `membership` names (v1 without a cgroup namespace), so the root counts too."""
    try:
        lines = Path(membership).read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount, version = Path(root), 2
        elif "cpu" in controllers.split(","):
            mount, version = Path(root, controllers), 1
            if not mount.is_dir():
                mount = Path(root, "cpu")
        else:
            continue
        directory = mount / path.lstrip("/")
        for level in (directory, *directory.parents):
            quotas.append(_quota(level, version))
            if level == mount:
                break
    found = [quota for quota in quotas if quota is not None]
    return min(found) if found else None


def _quota(directory: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota, period = (directory / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
        return None if int(quota) < 0 else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def count(config: Config) -> int:
    """How many worker processes the config asks for; `auto` (the default) is one per usable
    CPU, except on the inmemory driver, whose one process holds the blobs."""
    wanted = config.http.workers
    number = usable_cpus() if wanted == "auto" else wanted
    if config.storage.driver == "inmemory":
        if wanted != "auto" and number > 1:
            raise StartupError(
                "http.workers: the inmemory driver keeps blobs in one process's memory; "
                "it serves from one worker"
            )
        return 1
    return max(1, number)


def bind_tcp(
    host: str | None, port: int, like: list[socket.socket] | None = None
) -> list[socket.socket]:
    """Listening sockets, with SO_REUSEPORT, on every address `host` names (None: all
    interfaces, IPv4 and IPv6, as asyncio's server binds them). With `like`, on exactly those
    sockets' addresses, so that port 0 picks one port for all workers."""
    targets: list[tuple[int, Any]] = []
    if like:
        targets = [(sock.family, sock.getsockname()) for sock in like]
    else:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for found_family, address in dict.fromkeys((f, a) for f, _, _, _, a in found):
            # SO_REUSEPORT would let this bind share a port another server listens on the same
            # way (a second moorage): take each address alone first, so that fails here.
            taken = _probe(found_family, address)
            if taken is not None:
                targets.append((found_family, taken))
    sockets: list[socket.socket] = []
    try:
        for family, address in targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _probe(family: int, address: Any) -> Any:
    """Binds `address` without SO_REUSEPORT and lets go: the address actually bound (port 0
    picks one), None when the address family is off on this host (as asyncio skips it).
    Raises OSError when the address is in use."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return None
            raise
        return probe.getsockname()


def bind(config: Config, workers: int) -> list[tuple[list[socket.socket], list[socket.socket]]]:
    """Each worker's (API, debug) listening sockets; StartupError names an address that cannot
    be listened on."""
    http = config.http
    api: list[list[socket.socket]] = []
    try:
        api = _bind_api(config, workers)
    except OSError as exc:
        raise StartupError(f"cannot listen on {http.addr}: {exc.strerror}") from None
    debug: list[list[socket.socket]] = [[] for _ in range(workers)]
    if http.debug.addr:
        try:
            debug = _bind_each(http.debug.addr, workers)
        except OSError as exc:
            _close(api)
            raise StartupError(
                f"http.debug: cannot listen on {http.debug.addr}: {exc.strerror}"
            ) from None
    return list(zip(api, debug, strict=True))


def _close(listeners: list[list[socket.socket]]) -> None:
    for sockets in listeners:
        for sock in sockets:
            sock.close()


def _bind_api(config: Config, workers: int) -> list[list[socket.socket]]:
    http = config.http
    if http.net == "unix":
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(http.addr).st_mode):
                os.unlink(http.addr)  # a stale socket of an earlier run, as asyncio does
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            unix.bind(http.addr)
            unix.listen(BACKLOG)
        except BaseException:
            unix.close()
            raise
        unix.setblocking(False)
        return [[unix] for _ in range(workers)]
    return _bind_each(http.addr, workers)


def _bind_each(addr: str, workers: int) -> list[list[socket.socket]]:
    """Each worker's sockets on the TCP address `addr`: the first worker's pick the port."""
    host, port = split_addr(addr)
    first = bind_tcp(host, port)
    each = [first]
    try:
        each += [bind_tcp(host, port, like=first) for _ in range(workers - 1)]
    except BaseException:
        _close(each)
        raise
    return each


def supervise(config: Config, redactor: Redactor, workers: int, strict_secrets: bool) -> int:
    """Runs `workers` worker processes until SIGTERM or SIGINT; the exit status of serve.
    Raises StartupError before any worker starts."""
    checked = Server(config, redactor, strict_secrets=strict_secrets)  # the config's errors, once
    listeners = bind(config, workers)
    rundir, lock = make_rundir()
    os.mkdir(os.path.join(rundir, "metrics"))
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)
    due: dict[int, float] = {}  # worker index -> when to try starting it again

    def start(index: int) -> None:
        api, debug = listeners[index] if index != NOTIFIER else ([], [])
        worker = Worker(index, rundir, api, debug)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code below
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
                # Only its own listeners stay open here, so that a worker's stop closes them.
                for sock in {s for pair in listeners for s in pair[0] + pair[1]} - {*api, *debug}:
                    sock.close()
                if index == NOTIFIER:
                    code = _run_notifier(config, worker)
                else:
                    code = _run_worker(config, redactor, strict_secrets, worker)
            finally:
                os._exit(code)
        children[pid] = (index, time.monotonic())

    def restart(index: int) -> None:
        try:
            start(index)
        except OSError as exc:  # fork failed (memory, process limits): try again later
            log.error("moorage worker %d could not be started again (%s); retrying", index, exc)
            due[index] = time.monotonic() + RESTART_PAUSE

    def stop() -> None:
        # The supervisor's copies would keep the listeners accepting into queues no worker
        # reads once the workers have stopped theirs: let go, so new connections are refused.
        _close([api + debug for api, debug in listeners])
        _signal_all(children, signal.SIGTERM)

    # What the workers would each load on first use is loaded once, here, and the objects made
    # so far are frozen out of the garbage collector, whose passes would otherwise write to
    # every one of them in every worker and so copy the pages they share with this process.
    try:
        checked.registry.driver.preload()
    except Exception as exc:  # an optimisation: each worker loads its own on first use
        log.warning("storage: could not preload for the workers (%s)", redactor.redact(str(exc)))
    hashstate.available()  # libcrypto, and its self-test, for every worker
    gc.collect()
    gc.freeze()
    status = 0
    stopping = False
    try:
        for index in range(workers):
            start(index)
        if checked.notifications is not None:
            start(NOTIFIER)
        log.info("%s", checked.describe(workers))
        while children or (due and not stopping):
            received = signal.sigtimedwait(_SIGNALS, 1.0)
            # (not "anything but SIGCHLD": a supervisor stopped past the timeout, as by a
            # terminal's Ctrl-Z, gets an empty siginfo, signal 0, when it is continued)
            if received is not None and received.si_signo in _STOPPING and not stopping:
                stopping = True
                stop()
            for index, when in list(due.items()):
                if not stopping and time.monotonic() >= when:
                    del due[index]
                    restart(index)
            for pid, code in _reaped():
                index, started = children.pop(pid)
                multiprocess.mark_process_dead(pid, os.path.join(rundir, "metrics"))  # type: ignore[no-untyped-call]
                if stopping:
                    continue
                if code == STARTUP_FAILED:
                    log.error("moorage worker %d could not start; stopping", index)
                    stopping, status = True, 1
                    stop()
                    continue
                what = "notifier" if index == NOTIFIER else f"worker {index}"
                log.error("moorage %s exited (status %d); starting it again", what, code)
                if time.monotonic() - started < RESTART_PAUSE:  # not in a tight loop
                    due[index] = started + RESTART_PAUSE
                else:
                    restart(index)
    finally:
        _signal_all(children, signal.SIGKILL)  # only when the supervisor itself fails
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        _close([api + debug for api, debug in listeners])
        shutil.rmtree(rundir, ignore_errors=True)
        os.close(lock)
    return status


def make_rundir() -> tuple[str, int]:
    """A new run directory in TMPDIR, and the descriptor of its lock, held by the supervisor
    and (inherited) by every worker for as long as any of them lives. Run directories whose
    lock nobody holds any more, left by a SIGKILLed supervisor whose workers were killed too,
    are removed first."""
    remove_abandoned_rundirs()
    rundir = tempfile.mkdtemp(prefix=RUNDIR_PREFIX)
    lock = os.open(os.path.join(rundir, RUNDIR_LOCK), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # waits out a cleaner that opened it an instant ago
    os.write(lock, f"{os.getpid()}\n".encode())  # a lock holding a pid is a finished one
    return rundir, lock


def remove_abandoned_rundirs() -> None:
    """Removes the run directories in TMPDIR whose lock is free and was once taken: no process
    of theirs is left. One being made right now (its lock still empty) is left alone."""
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(RUNDIR_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            lock = os.open(os.path.join(entry.path, RUNDIR_LOCK), os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # not ours, or not a run directory
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.read(lock, 32).strip():
                shutil.rmtree(entry.path, ignore_errors=True)
                log.info("removed %s, left by a moorage that was killed", entry.path)
        except OSError:
            pass  # held: its supervisor or a worker still runs
        finally:
            os.close(lock)


def _signal_all(children: dict[int, tuple[int, float]], sig: int) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reaped() -> list[tuple[int, int]]:
    """(pid, exit status) of every child that has ended, without waiting."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _stop_with_parent() -> None:
    """Asks Linux for SIGTERM (a drain) when the supervisor dies, even by SIGKILL, so that no
    worker serves on unsupervised."""
    supervisor = os.getppid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: nothing to ask
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _yield_to_workers() -> None:
    """Puts the notifier below the workers: SCHED_IDLE, which Linux runs only on what CPU the
    others leave (a nice 19 process still takes a share of a busy CPU, and under load that
    share slowed requests by about 2%), and nice 19 where that policy is missing (and for
    tools that tell processes apart by their nice value)."""
    with contextlib.suppress(OSError):
        os.nice(NOTIFIER_NICE)
    if hasattr(os, "sched_setscheduler"):  # Linux
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _run_notifier(config: Config, worker: Worker) -> int:
    """The notifier's life: it delivers the events every worker spools (moorage.notifications),
    below the workers (_yield_to_workers), so that delivery yields the CPU to requests; its
    metrics join the workers' in the run directory. Its exit status."""
    from moorage import notifications
    from moorage.metrics import Metrics

    _stop_with_parent()
    _yield_to_workers()
    code = 0
    try:
        built = notifications.from_config(config)
        if built is None:
            return 0

        async def deliver() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await built.notifier(Metrics(worker.path("metrics"))).run(stop)

        asyncio.run(deliver())
    except BaseException:
        log.exception("moorage notifier failed")
        code = 1
    finally:
        logging.shutdown()
    return code


def _run_worker(config: Config, redactor: Redactor, strict_secrets: bool, worker: Worker) -> int:
    """A forked worker's life; its exit status."""
    code = 0
    supervisor = os.getppid()
    _stop_with_parent()
    try:
        asyncio.run(serve(config, redactor, strict_secrets=strict_secrets, worker=worker))
    except (StartupError, SecretProblem) as exc:
        print(redactor.redact(f"moorage: worker {worker.index}: {exc}"), file=sys.stderr)
        code = STARTUP_FAILED
    except BaseException:
        log.exception("moorage worker %d failed", worker.index)
        code = 1
    finally:
        if os.getppid() != supervisor:  # orphaned: no supervisor left to remove the run directory
            shutil.rmtree(worker.rundir, ignore_errors=True)  # (siblings keep their mappings)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return code
