"""Processes the driver watches: one child process per system, and the scoring pool's workers.

A system runs in a child process of its own (`SystemProcess`): it is sent there once, prepared
there once (its model loaded once), and then called item batch by item batch. Every call has a
deadline. When a call does not return in time the child is killed; when the child exits, crashes
or is killed (a segfault, the kernel's out-of-memory killer, `sys.exit` inside `process`), the
call raises `SystemFault` with the reason ("timed out after 120 s", "system process exited with
code 0", "killed by signal 11 (SIGSEGV)") and the next call starts a fresh child. The child
leads a process group of its own, so whatever it started is killed with it. The driver stays the
only writer of the results store.

No process of the harness outlives the driver: every child asks the kernel to kill it when its
parent dies (PR_SET_PDEATHSIG), and watches the driver's pidfd from a thread (a forkserver's
children have the forkserver, not the driver, as parent; a driver killed while a child was still
starting is seen at once: its pidfd is readable). Children ignore SIGINT: Ctrl-C is the driver's
to handle (it stops them itself).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from harness.errors import AudioError, ConfigError, HarnessError

log = logging.getLogger("harness")

# The forkserver imports these once; each child is then a fork of a clean, single-threaded
# server, ready in milliseconds (a spawned child would import torch and the harness again).
PRELOAD = ["harness.runner", "harness.planning", "harness.api"]  # system modules load when a system unpickles

# The deadline of a system call when none is configured: a fixed allowance plus a multiple of
# the audio it is given (seconds of every input file of the batch's items).
TIMEOUT_BASE_S = 120.0
TIMEOUT_PER_AUDIO_S = 10.0
PREPARE_TIMEOUT_S = 600.0


def context() -> multiprocessing.context.BaseContext:
    """forkserver where the platform has it (Linux), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


# ------------------------------------------------------------------ dying with the driver


def _alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def die_with_driver(driver_pid: int, own_group: bool = False) -> None:
    """In a child: end when the driver ends, and leave Ctrl-C to the driver.

    Two guards. The kernel kills the child when its parent dies (PR_SET_PDEATHSIG): that covers
    children of the driver itself (spawn). Children of the forkserver need the second: the
    forkserver lives as long as any of its children holds its 'alive' pipe, so it never dies
    first; a watcher thread waits on the driver's pidfd (readable when the driver exits, even
    before it is reaped) and ends the child then."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if own_group:  # a system's own subprocesses go down with it (killpg)
        os.setpgrp()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass
    _watch_driver(driver_pid, own_group)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid` (a system process and whatever it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _watch_driver(pid: int, own_group: bool) -> None:
    import select
    import threading

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already gone (and reaped)
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here: poll
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _alive(pid):
                time.sleep(0.2)
        if own_group:
            kill_group(os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-driver-watch", daemon=True).start()


def scoring_worker_init(driver_pid: int) -> None:
    """Initializer of the scoring pool's workers."""
    die_with_driver(driver_pid)


# ------------------------------------------------------------------ the system process


class SystemFault(Exception):
    """The system's process timed out, exited or was killed during a call."""


@dataclass
class SystemRaised(Exception):
    """The system raised inside its process; `kind` is 'audio' (the item's own files are bad),
    'harness' (a HarnessError: a message for the user) or 'error' (anything else)."""

    kind: str
    message: str
    details: str = ""

    def __str__(self) -> str:
        return self.message


def describe_exit(code: int | None) -> str:
    if code is None:
        return "system process stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        hint = "; out of memory?" if -code == signal.SIGKILL else ""
        return f"system process killed by signal {-code} ({name}{hint})"
    return f"system process exited with code {code}"


def _classify(exc: BaseException) -> tuple[str, str]:
    from harness.metrics.base import first_line

    if isinstance(exc, AudioError):
        return "audio", str(exc)
    if isinstance(exc, HarnessError):
        return "harness", str(exc)
    return "error", first_line(exc)


def _system_main(conn, blob: bytes, driver_pid: int) -> None:
    """The child: unpickle the system, then answer ('prepare', device) and ('process', items,
    listener) requests until the driver closes the pipe. SystemExit is not caught: a system that
    exits ends its process, and the driver reports the exit code."""
    die_with_driver(driver_pid, own_group=True)
    system = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if system is None:
                system = pickle.loads(blob)
            if request[0] == "prepare":
                system.prepare(request[1])
                reply: tuple = ("ok", None)
            else:
                reply = ("ok", system.process(request[1], request[2]))
        except (Exception, KeyboardInterrupt) as exc:  # the system's error: report it, stay alive
            kind, message = _classify(exc)
            reply = ("raised", kind, message, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # the outputs cannot be pickled
            kind, message = _classify(exc)
            conn.send(("raised", "error", f"its outputs cannot be sent back ({message})", ""))


def audio_seconds(items) -> float:
    """Seconds of input audio in a batch (every input file of every item, as the manifest says)."""
    total = 0.0
    for it in items:
        for ref in it.inputs.values():
            if isinstance(ref.rate, int) and ref.rate > 0 and isinstance(ref.frames, int):
                total += max(ref.frames, 0) / ref.rate
    return total


def deadline_for(timeout: float | str, items) -> float:
    """The deadline of one call: `timeout` seconds, or for 'auto' 120 s + 10 s per second of
    input audio in the call."""
    if timeout == "auto":
        return TIMEOUT_BASE_S + TIMEOUT_PER_AUDIO_S * audio_seconds(items)
    return float(timeout)


class SystemProcess:
    """One system in a child process, started on first use and restarted after a fault."""

    def __init__(self, name: str, system: Any, device: str, timeout: float | str = "auto") -> None:
        self.name = name
        self.device = device
        self.timeout = timeout
        try:
            self.blob = pickle.dumps(system)
        except Exception as exc:
            raise ConfigError(f"system {name!r} cannot be sent to its own process: it does not "
                              f"pickle ({type(exc).__name__}: {exc})") from None
        self.proc = None
        self.conn = None
        self.starts = 0
        self.broken: Exception | None = None  # why prepare failed: no later call retries it

    # ---- life cycle
    def _start(self) -> None:
        ctx = context()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_system_main, args=(child, self.blob, os.getpid()),
                           name=f"harness-system-{self.name}", daemon=True)
        proc.start()
        child.close()
        self.proc, self.conn = proc, parent
        self.starts += 1
        timeout = (PREPARE_TIMEOUT_S if self.timeout == "auto"
                   else max(PREPARE_TIMEOUT_S, float(self.timeout)))
        try:
            self._call(("prepare", self.device), timeout, "prepare")
        except (SystemFault, SystemRaised) as exc:
            self.stop()
            if isinstance(exc, SystemFault):
                exc = SystemFault(f"prepare failed: {exc}")
            else:
                exc = SystemRaised(exc.kind, f"prepare failed: {exc.message}", exc.details)
            self.broken = exc
            raise exc from None

    def stop(self, grace: float = 0.0) -> None:
        """End the child and forget it (the next call starts a fresh one): close its pipe, give it
        `grace` seconds to finish on its own, then kill it."""
        proc, conn = self.proc, self.conn
        self.proc = self.conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if grace:
                proc.join(grace)
            if proc.is_alive():
                proc.kill()
            kill_group(proc.pid)  # what the system started, even after it exited itself
            proc.join(5)

    def close(self) -> None:
        """End the child at the end of a run: it leaves by itself when its pipe closes."""
        self.stop(grace=2.0)

    # ---- calls
    def _call(self, request: tuple, timeout: float, what: str):
        try:
            self.conn.send(request)
            ready = self.conn.poll(timeout)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            ready = True  # the child is gone: recv below says so
        if not ready:
            self.stop()
            raise SystemFault(f"{'prepare ' if what == 'prepare' else ''}timed out after {timeout:g} s")
        try:
            reply = self.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            proc = self.proc
            proc.join(5)
            code = proc.exitcode
            self.stop()
            raise SystemFault(describe_exit(code)) from None
        if reply[0] == "raised":
            _, kind, message, details = reply
            raise SystemRaised(kind, message, details)
        return reply[1]

    def process(self, items: list, listener: Any) -> Any:
        """The system's outputs for a batch; SystemFault or SystemRaised when it cannot give them."""
        if self.broken is not None:
            raise self.broken
        if self.proc is None:
            self._start()
        started = time.monotonic()
        deadline = deadline_for(self.timeout, items)
        out = self._call(("process", items, listener), deadline, "process")
        log.debug("%s: %d item(s) in %.2f s", self.name, len(items), time.monotonic() - started)
        return out
