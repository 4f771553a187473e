"""Run a parser over untrusted files in worker processes that it cannot take down with it.

Measured: a 2 KB legal .xlsx with cells at A1 and XFD1048576 makes calamine allocate 512 GiB and
abort the whole Python process (SIGABRT, uncatchable); openpyxl ends in MemoryError after 30 s at
8 GB. So every file is parsed in a worker that has an address-space cap and a wall-clock budget;
a worker that dies or overruns is killed and replaced, and only its item fails.

Start method: "fork". Measured on the project's 2-core Linux box with pandas, openpyxl and
python-calamine imported in the parent, start + one round trip + join of a worker: fork 5.8 ms,
forkserver 278 ms, spawn 329 ms (spawn and forkserver re-import the parent's main module and the
parsers). Fork also lets ``func`` be any function, not only a picklable one. Fork's usual hazard,
a lock held by another parent thread at the moment of the fork, does not arise for the parsers
(the pipeline forks from its main thread, and the workers only run ``func``).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import multiprocessing
import os
import resource
import signal
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

MB = 1024 * 1024
START_TIMEOUT_SECONDS = 30.0  # a fork + setup takes milliseconds; this is for a swapping box
STOP_GRACE_SECONDS = 1.0  # an idle worker asked to stop exits in about a millisecond
STDERR_EXCERPT = 600  # characters of a dead worker's stderr kept in Outcome.detail
# What the runtimes print when an allocation fails under the address-space cap: Rust (calamine)
# aborts with the first, C++ throws the second, Python raises the third when it cannot recover.
_MEMORY_MARKERS = (
    b"memory allocation of",
    b"std::bad_alloc",
    b"MemoryError",
    b"Cannot allocate memory",
    b"out of memory",
)
_PR_SET_PDEATHSIG = 1


class IsolationError(RuntimeError):
    """A worker process could not be started or set up: the machine's fault, not a file's, so
    the run stops rather than reject every file."""


@dataclass
class Outcome:
    """What became of one item."""

    item: Any  # the job argument as given
    ok: bool
    value: Any = None  # the function's return value when ok
    failure: str | None = None  # "timeout" | "memory" | "crashed" | "error"
    detail: str = ""  # exception text / signal name, for the log


def run_isolated(
    func: Callable[[Any], Any],
    items: list,
    *,
    workers: int = 1,
    timeout: float = 60.0,
    memory_mb: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    on_outcome: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """Apply ``func`` to every item in worker processes; one Outcome per item, in input order.

    Each worker may grow its address space by ``memory_mb`` beyond what it inherits from this
    process at the fork (``RLIMIT_AS``; a plain cap would count the parent's pandas/numpy
    mappings, ~200 MB, against the parser), writes no core dumps, and gets ``timeout`` seconds of
    wall-clock time per item. An exception raised by ``func`` fails that item ("error") and the
    worker carries on; a MemoryError ("memory"), a signal or an exit ("crashed"), or an overrun
    ("timeout") costs the worker, which is replaced. ``progress(done, total)`` is called after
    each item. ``on_outcome(index, outcome)`` is called in this process as each item finishes,
    after the idle workers were given their next items, so that the caller's own work on a
    result overlaps the parsing of the next ones. Every worker is reaped before this returns or
    raises (KeyboardInterrupt included).
    A worker that cannot even set itself up raises IsolationError: that is the machine's fault,
    and rejecting every file for it would report every unit as 未报送.

    Example::

        outcomes = run_isolated(read_cells, paths, workers=2, timeout=60, memory_mb=1024)
        for outcome in outcomes:
            if not outcome.ok:
                log.warning("%s: %s %s", outcome.item, outcome.failure, outcome.detail)
    """
    items = list(items)
    total = len(items)
    if not total:
        return []
    outcomes: list[Outcome | None] = [None] * total
    done = 0
    arrived: deque[int] = deque()  # finished, not yet handed to on_outcome

    def finish(index: int, outcome: Outcome) -> None:
        nonlocal done
        outcomes[index] = outcome
        done += 1
        arrived.append(index)
        if progress is not None:
            progress(done, total)

    def deliver() -> None:
        while arrived:
            index = arrived.popleft()
            if on_outcome is not None:
                on_outcome(index, outcomes[index])

    pool = _Pool(func, memory_mb, size=max(1, min(workers, total)))
    pending = deque(range(total))
    resent: set[int] = set()
    try:
        while done < total:
            _hand_out(pool, pending, resent, items, timeout, finish)
            busy = [worker for worker in pool.workers if worker.index is not None]
            if not busy:
                continue  # every remaining item failed to be sent, and got its outcome
            soonest = min(worker.deadline for worker in busy)
            ready = set(
                wait(
                    [worker.conn for worker in busy] + [worker.process.sentinel for worker in busy],
                    timeout=max(0.0, soonest - time.monotonic()),
                )
            )
            now = time.monotonic()
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    index, outcome = worker.collect(items)
                elif now >= worker.deadline:
                    index, outcome = worker.overrun(items, timeout)
                else:
                    continue
                if not worker.alive_and_idle():
                    pool.retire(worker, replace=bool(pending))
                finish(index, outcome)
            if arrived and on_outcome is not None:
                _hand_out(pool, pending, resent, items, timeout, finish)  # busy workers while we deliver
                deliver()
        deliver()
    finally:
        pool.close()
    return outcomes  # type: ignore[return-value]


def _hand_out(pool: _Pool, pending: deque, resent: set[int], items: list, timeout: float, finish) -> None:
    """Give each idle worker the next item."""
    for worker in list(pool.workers):
        while pending and worker.index is None:
            index = pending.popleft()
            try:
                worker.assign(index, items[index], timeout)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                # The idle worker died (killed from outside): the item was never tried. Once
                # more with a fresh worker; a second loss fails the item rather than loop.
                pool.retire(worker, replace=True)
                if index in resent:
                    finish(
                        index,
                        Outcome(
                            items[index],
                            False,
                            failure="crashed",
                            detail="worker process died before the item was sent",
                        ),
                    )
                else:
                    resent.add(index)
                    pending.appendleft(index)
                break
            except Exception as exc:  # an unpicklable item: its failure alone
                finish(index, Outcome(items[index], False, failure="error", detail=_describe(exc)))


class _Worker:
    """One worker process, the parent's end of its pipe, and the file its stderr goes to."""

    def __init__(self, func, memory_mb: int, inherited: list):
        context = multiprocessing.get_context("fork")
        self.stderr = tempfile.TemporaryFile()
        self.conn, child_conn = context.Pipe(duplex=True)
        self.index: int | None = None
        self.deadline = 0.0
        self.killed = False
        self.process = context.Process(
            target=_serve,
            args=(
                child_conn,
                func,
                memory_mb,
                self.stderr.fileno(),
                [*inherited, self.conn],
                os.getpid(),
            ),
            name="consolidate-parser",
        )
        # Ctrl-C between the fork and the bookkeeping would leave an untracked child: hold SIGINT
        # until the worker is recorded (the child unblocks it, then ignores it).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process.start()
        except BaseException:
            self.conn.close()
            self.stderr.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            child_conn.close()

    def wait_ready(self) -> None:
        """The child says "ready" once its limits are in place; anything else is an
        IsolationError, raised before a file can be blamed for it."""
        message = None
        if self.conn.poll(START_TIMEOUT_SECONDS):
            with contextlib.suppress(EOFError, OSError):
                message = self.conn.recv()
        if message != "ready":
            self.kill()
            raise IsolationError(f"parser worker failed to start: {_excerpt(self._stderr()) or 'no output'}")

    def assign(self, index: int, item: Any, timeout: float) -> None:
        self.conn.send((index, item))
        self.index = index
        self.deadline = time.monotonic() + timeout

    def collect(self, items: list) -> tuple[int, Outcome]:
        """The worker has answered or died: turn that into the in-flight item's outcome."""
        index = self.index
        item = items[index]
        self.index = None
        message = None
        if self.conn.poll():
            with contextlib.suppress(EOFError, OSError):
                message = self.conn.recv()
        if message is None:
            return index, self._death(item)
        _, status, payload = message
        if status == "ok":
            return index, Outcome(item, True, value=payload)
        if status == "memory":
            self.killed = True  # it exits by itself after a MemoryError
            return index, Outcome(item, False, failure="memory", detail=payload)
        return index, Outcome(item, False, failure="error", detail=payload)

    def overrun(self, items: list, timeout: float) -> tuple[int, Outcome]:
        index = self.index
        self.index = None
        self.kill()
        detail = f"no result after {timeout:g} s"
        return index, Outcome(items[index], False, failure="timeout", detail=detail)

    def alive_and_idle(self) -> bool:
        return self.index is None and not self.killed and self.process.is_alive()

    def kill(self) -> None:
        self.killed = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()

    def ask_to_stop(self) -> None:
        """An idle worker returns from its loop and exits by itself (about a millisecond)."""
        if self.index is None and not self.killed:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)

    def release(self) -> None:
        self.conn.close()
        self.stderr.close()
        with contextlib.suppress(ValueError):
            self.process.close()

    def _death(self, item: Any) -> Outcome:
        # The pipe said EOF; the process may need a moment to become reapable.
        self.process.join(STOP_GRACE_SECONDS)
        code = self.process.exitcode
        self.kill()
        stderr = self._stderr()
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            how = f"killed by {name}"
        else:
            how = f"exited with code {code}"
        detail = f"{how}: {_excerpt(stderr)}" if stderr.strip() else how
        if any(marker in stderr for marker in _MEMORY_MARKERS):
            return Outcome(item, False, failure="memory", detail=detail)
        if code == -signal.SIGKILL:
            # Nobody here sent it (timeouts are handled before): the kernel's OOM killer.
            return Outcome(item, False, failure="memory", detail=f"{detail} (likely out of memory)")
        return Outcome(item, False, failure="crashed", detail=detail)

    def _stderr(self) -> bytes:
        try:
            return os.pread(self.stderr.fileno(), 64 * 1024, 0)
        except OSError:
            return b""


class _Pool:
    def __init__(self, func, memory_mb: int, size: int):
        self.func = func
        self.memory_mb = memory_mb
        self.workers: list[_Worker] = []
        try:
            for _ in range(size):
                self._start()
            for worker in self.workers:  # started together, so their setups overlap
                worker.wait_ready()
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Worker:
        # The new child must not hold the parent's ends of the other workers' pipes, or those
        # workers would not see EOF if this process died.
        inherited = [worker.conn for worker in self.workers]
        worker = _Worker(self.func, self.memory_mb, inherited)
        self.workers.append(worker)
        return worker

    def retire(self, worker: _Worker, replace: bool) -> None:
        worker.kill()
        worker.release()
        self.workers.remove(worker)
        if replace:
            self._start().wait_ready()

    def close(self) -> None:
        """Stop every worker and reap it: idle ones politely, busy ones (an interrupted run) by
        SIGKILL. No zombie or orphan survives this."""
        for worker in self.workers:
            if worker.index is not None:
                worker.kill()
            else:
                worker.ask_to_stop()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()
            worker.release()
        self.workers.clear()


# ----------------------------------------------------------------------------------------------
# In the child


def _serve(conn, func, memory_mb: int, stderr_fd: int, inherited: list, parent: int) -> None:
    """The worker's loop: receive (index, item), answer (index, status, payload), until told to
    stop or the parent goes away."""
    try:
        os.dup2(stderr_fd, 2)
        # Where in Python a fatal signal struck goes to the same file, for Outcome.detail (and
        # not to a faulthandler file inherited from the parent, such as pytest's terminal). By
        # descriptor: sys.stderr may be a stand-in without one (click's CliRunner).
        faulthandler.enable(file=2)
        for other in inherited:
            other.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        _die_with_parent(parent)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _cap_address_space(memory_mb)
        conn.send("ready")
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        os._exit(70)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        index, item = job
        # Keep only this item's stderr, for the parent to read if the worker dies on it.
        os.ftruncate(2, 0)
        os.lseek(2, 0, os.SEEK_SET)
        try:
            conn.send((index, "ok", func(item)))
        except MemoryError:
            # The heap may be left fragmented or half-built: report, exit, and be replaced.
            _send_quietly(conn, (index, "memory", "MemoryError"))
            return
        except Exception as exc:  # func's failure (or an unpicklable result)
            _send_quietly(conn, (index, "error", _describe(exc)))


def _send_quietly(conn, message) -> None:
    with contextlib.suppress(Exception):
        conn.send(message)


def _cap_address_space(memory_mb: int) -> None:
    with open("/proc/self/statm") as statm:
        inherited = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = inherited + int(memory_mb * MB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _load_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved in the parent so that the forked child does not pay for it on every start.
_prctl = _load_prctl()


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this worker if the parent dies (even by SIGKILL), so that no
    orphan keeps parsing after the run is gone."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _excerpt(stderr: bytes) -> str:
    """One log line from the head of what the worker printed: a Rust abort message, or
    faulthandler's innermost frames, come first."""
    lines = stderr.decode("utf-8", "replace").splitlines()
    text = " | ".join(line.strip() for line in lines if line.strip())
    return text if len(text) <= STDERR_EXCERPT else f"{text[:STDERR_EXCERPT]} …"
