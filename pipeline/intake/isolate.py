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

Pipelined and batched, for many small files (issue 7): each worker is sent its next items before
it answers (``PIPELINE_DEPTH``), so that it never waits for the parent between items, and it
answers a few items at a time (``RESULT_BATCH``, or sooner when it has nothing queued or the
batch is ``RESULT_BATCH_SECONDS`` old). Measured at 3,000 returns of ~10 KB with one worker: a
strict send/answer round trip per file left the worker idle about 0.3 ms a file, as long as the
parse, and each answer alone cost the worker ~60 µs (waking the parent's CPU). Which item a
worker is on, and since when, it writes to memory shared with the parent (``_State``) as it
starts each one, with no message: the timeout is still per item from its start, and a death or
an overrun is still the fault of the item it was on alone. Items it finished but had not yet
answered, and those queued behind, go back to the front of the line for the next worker.
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
from multiprocessing.reduction import ForkingPickler
from typing import Any

MB = 1024 * 1024
# Items in flight per worker (sent and not answered): two batches, so that the worker parses one
# while the parent takes in the other. Few enough that not many items wait behind a file that
# hangs (they go to the next worker when it is killed) or are parsed again after a crash.
RESULT_BATCH = 8
RESULT_BATCH_SECONDS = 0.05  # a batch of slow files is answered after this, not after 8 files
RESULT_BATCH_BYTES = 1 * MB  # nor is a large book kept waiting in the worker's memory
PIPELINE_DEPTH = 2 * RESULT_BATCH
# Unread items a busy worker may have in its pipe, in pickled bytes: the parent must never block
# writing to it (while the worker blocks writing its answers), so they stay well within the
# socket's buffer (~200 KB on Linux). A larger item waits until the worker is idle.
PIPELINE_BYTES = 64 * 1024
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
            busy = [worker for worker in pool.workers if worker.queue]
            if not busy:
                continue  # every remaining item failed to be sent, and got its outcome
            soonest = min(worker.deadline(timeout) for worker in busy)
            ready = set(
                wait(
                    [worker.conn for worker in busy] + [worker.process.sentinel for worker in busy],
                    timeout=max(0.0, soonest - time.monotonic()),
                )
            )
            now = time.monotonic()
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    results = worker.collect(items, died=worker.process.sentinel in ready)
                elif now >= worker.deadline(timeout):
                    results = worker.overrun(items, timeout)
                else:
                    continue
                if not worker.usable():
                    if not results and worker.queue:
                        # It died between items (killed from outside): nobody to blame. Once more
                        # with a fresh worker; a second such loss fails the oldest item rather
                        # than loop.
                        first = worker.queue[0]
                        if first in resent:
                            worker.forget(first)
                            results = [(first, Outcome(items[first], False, failure="crashed", detail="worker process died between items"))]  # fmt: skip
                        resent.add(first)
                    # Items it had finished but not answered, and those queued behind: redone.
                    pending.extendleft(reversed(worker.queue))
                    worker.queue.clear()
                    worker.sizes.clear()
                    pool.retire(worker, replace=bool(pending))
                for index, outcome in results:
                    finish(index, outcome)
            if arrived and on_outcome is not None:
                _hand_out(pool, pending, resent, items, timeout, finish)  # busy workers while we deliver
                deliver()
        deliver()
    finally:
        pool.close()
    return outcomes  # type: ignore[return-value]


def _hand_out(pool: _Pool, pending: deque, resent: set[int], items: list, timeout: float, finish) -> None:
    """Fill each worker's queue with the next items, up to PIPELINE_DEPTH: one level at a time,
    so that every idle worker starts on something before any gets a second item."""
    for level in range(1, PIPELINE_DEPTH + 1):
        for worker in list(pool.workers):
            _fill(pool, worker, level, pending, resent, items, timeout, finish)


def _fill(pool: _Pool, worker: _Worker, level: int, pending: deque, resent: set[int], items, timeout, finish) -> None:
    """Send ``worker`` items until it has ``level`` in flight."""
    while pending and len(worker.queue) < level and not worker.killed:
        index = pending.popleft()
        try:
            message = _dumps((index, items[index]))
            if worker.queue and worker.queued_bytes + len(message) > PIPELINE_BYTES:
                pending.appendleft(index)  # sent once the worker has read more of its pipe
                break
            worker.assign(index, message)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            if worker.queue:
                # It died on the item it is parsing: the wait in run_isolated collects that
                # death and replaces it. This item was never sent.
                pending.appendleft(index)
                break
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
        # Items sent and not yet answered, in order: the worker parses them in this order.
        self.queue: deque[int] = deque()
        self.sizes: dict[int, int] = {}  # pickled size of each item in the queue
        self.queued_bytes = 0
        self.state = _State(context)
        self.sent_at = 0.0  # when an idle worker was sent its next item
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
                self.state,
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

    def assign(self, index: int, message: bytes) -> None:
        """Send one pickled (index, item)."""
        self.conn.send_bytes(message)
        if not self.queue:
            self.sent_at = time.monotonic()
        self.queue.append(index)
        self.sizes[index] = len(message)
        self.queued_bytes += len(message)

    def forget(self, index: int) -> None:
        """The item is answered (or given up on): no longer in flight."""
        self.queue.remove(index)  # the oldest, when the worker answers: it goes in order
        self.queued_bytes -= self.sizes.pop(index)

    def deadline(self, timeout: float) -> float:
        """When the item the worker is on (or, between items, the wait for the next one) has
        had its ``timeout``."""
        return max(self.state.since(), self.sent_at) + timeout

    def collect(self, items: list, died: bool) -> list[tuple[int, Outcome]]:
        """The worker has answered or died: every answer waiting in the pipe, in order, then,
        if it died, the death of the item it was on (none if it died between items)."""
        results = []
        while self.queue and not self.killed:
            batch = None
            if self.conn.poll():
                try:
                    batch = self.conn.recv()
                except (EOFError, OSError):
                    died = True
            if batch is None:
                if died:
                    results.extend(self._blame(items, self._death))
                break
            for answer in batch:
                index, status, payload = ForkingPickler.loads(answer)
                self.forget(index)
                item = items[index]
                if status == "ok":
                    results.append((index, Outcome(item, True, value=payload)))
                elif status == "memory":
                    self.killed = True  # it exits by itself after a MemoryError
                    results.append((index, Outcome(item, False, failure="memory", detail=payload)))
                else:
                    results.append((index, Outcome(item, False, failure="error", detail=payload)))
        return results

    def overrun(self, items: list, timeout: float) -> list[tuple[int, Outcome]]:
        def late(item: Any) -> Outcome:
            return Outcome(item, False, failure="timeout", detail=f"no result after {timeout:g} s")

        results = self._blame(items, late)
        self.kill()
        return results

    def _blame(self, items: list, outcome_of) -> list[tuple[int, Outcome]]:
        """The outcome of the item the worker was on when it died or was stopped, taken out of
        the queue; the rest of the queue is for the caller to send again."""
        index = self.state.current()
        if index is None or index not in self.queue:
            self.kill()
            return []
        self.forget(index)
        return [(index, outcome_of(items[index]))]

    def usable(self) -> bool:
        return not self.killed and self.process.is_alive()

    def kill(self) -> None:
        self.killed = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()

    def ask_to_stop(self) -> None:
        """An idle worker returns from its loop and exits by itself (about a millisecond)."""
        if not self.queue and not self.killed:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)

    def release(self) -> None:
        self.conn.close()
        self.stderr.close()
        with contextlib.suppress(ValueError):
            self.process.close()

    def _death(self, item: Any) -> Outcome:
        """What killed the worker, from its exit status and the stderr of the item it was on."""
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
            if worker.queue:
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


class _State:
    """Which item a worker is on and since when, in memory shared with the parent: written by
    the worker as it starts and ends each item, read by the parent to time it and, should the
    worker die, to know which item it died on."""

    BETWEEN = -1.0  # between items: finished one, not started the next

    def __init__(self, context):
        self._slots = context.RawArray("d", [self.BETWEEN, 0.0])

    def start(self, index: int) -> None:
        self._slots[1] = time.monotonic()
        self._slots[0] = float(index)

    def end(self) -> None:
        self._slots[1] = time.monotonic()
        self._slots[0] = self.BETWEEN

    def current(self) -> int | None:
        index = self._slots[0]
        return None if index == self.BETWEEN else int(index)

    def since(self) -> float:
        return self._slots[1]


def _serve(conn, func, memory_mb: int, stderr_fd: int, inherited: list, parent: int, state: _State) -> None:
    """The worker's loop: receive (index, item), answer (index, status, payload) in batches of
    pickled answers, until told to stop or the parent goes away."""
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
    batch: list[bytes] = []  # answers not yet sent, each pickled as its item ended
    batch_started = 0.0
    batch_bytes = 0
    while True:
        if batch and (
            len(batch) >= RESULT_BATCH
            or batch_bytes >= RESULT_BATCH_BYTES
            or time.monotonic() - batch_started >= RESULT_BATCH_SECONDS
            or not conn.poll()  # nothing queued: answer before waiting (the parent may be too)
        ):
            if not _send_quietly(conn, batch):
                return
            batch = []
            batch_bytes = 0
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
        state.start(index)
        if not batch:
            batch_started = time.monotonic()
        try:
            # Pickled here, so that an unpicklable or too large result is this item's failure.
            batch.append(_dumps((index, "ok", func(item))))
        except MemoryError:
            # The heap may be left fragmented or half-built: report, exit, and be replaced.
            _send_quietly(conn, [*batch, _dumps((index, "memory", "MemoryError"))])
            return
        except Exception as exc:  # func's failure (or an unpicklable result)
            batch.append(_dumps((index, "error", _describe(exc))))
        batch_bytes += len(batch[-1])
        state.end()


def _dumps(message) -> bytes:
    """Pickled as Connection.send would (the worker's recv unpickles it), so that its size is
    known before it is sent."""
    return bytes(ForkingPickler.dumps(message))


def _send_quietly(conn, message) -> bool:
    """Send, or say that the parent is gone (or the message could not be sent)."""
    try:
        conn.send(message)
    except Exception:  # noqa: BLE001 - nobody left to tell
        return False
    return True


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
