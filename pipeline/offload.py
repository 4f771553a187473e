"""Work done by a forked child while this process goes on, its answer through a temporary file.

Two pieces of a province-scale run are pure, long, and not needed at once: reading the task list
(a second of calamine, which holds the GIL, so a thread would not overlap it), needed only once
the returns are archived; and rendering 明细's 68,673 rows (a second of Python), needed only
once the other sheets are written. Each is computed by a child forked when the work can start,
while this process does the rest. A fork copies the process as it is, so nothing is pickled on
the way in; the answer comes back through an unnamed temporary file, written as it is made,
so the child never waits for this process to read.

Where the child cannot run (no fork, no memory for one) or fails, the caller computes here
instead: the answer is the same either way, only later, and an error raises here, where the
run reports it. With the second core busy the two processes share one, which costs the fork
(milliseconds), not the work twice.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable, Iterable


class Offload:
    """``func()``'s pieces (text as UTF-8, or bytes), joined, computed in a forked child;
    ``answer()`` is None where the caller must compute them itself."""

    def __init__(self, func: Callable[[], Iterable[str | bytes]], name: str = "consolidate-offload"):
        self._func = func
        self._process = None
        self._file = None
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        try:
            file = tempfile.TemporaryFile(prefix="consolidate-")
        except OSError:  # no room for it: compute here instead
            return
        process = context.Process(target=_serve, args=(file, func), name=name, daemon=True)
        # Ctrl-C between the fork and the bookkeeping would leave an untracked child.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        except OSError:  # fork refused (EAGAIN, ENOMEM): compute here instead
            file.close()
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._process, self._file = process, file

    def answer(self) -> bytes | None:
        """The child's bytes (text pieces UTF-8 encoded), or None when there is no child or it
        failed: the caller then computes the answer itself."""
        if self._process is None:
            return None
        self._process.join()
        data = None
        if self._process.exitcode == 0:  # it wrote every piece and flushed them
            self._file.seek(0)
            data = self._file.read()
        self.close()
        return data

    def close(self) -> None:
        """Stop and reap the child, whatever state it is in; drop its file."""
        process, file = self._process, self._file
        self._process = self._file = None
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join()
            process.close()
        if file is not None:
            file.close()

    def __enter__(self) -> Offload:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _serve(file, func: Callable[[], Iterable[str | bytes]]) -> None:
    """In the child: compute and write piece by piece, flush, exit 0. Silent on failure (exit
    1): the parent computes it all again and reports whatever goes wrong there."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        for piece in func():
            file.write(piece.encode("utf-8") if isinstance(piece, str) else piece)
        file.flush()
    except BaseException:  # noqa: BLE001 - whatever it is, the parent redoes the work
        os._exit(1)
