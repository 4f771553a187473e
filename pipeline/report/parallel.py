"""The second core for storing the workbook: the parts of the package compressed by two threads.

(明细's rows are rendered by a forked child meanwhile: pipeline/offload.py, used by workbook.py.)

Compressing the package's 80 MB of XML takes about a second at province scale, one part after
another in xlsxwriter's ``zipfile.ZipFile``. ``DeflatedZip`` stands in for it while the workbook
is stored (``parallel_deflate``): the parts are deflated by two threads (zlib lets go of the GIL
while it compresses) and written in xlsxwriter's order, with zipfile's level, dates and
attributes: the same bytes zipfile writes (tests/test_parallel.py).
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

DEFLATE_THREADS = 2
DEFLATE_LEVEL = 6  # zlib's default, which zipfile uses
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")


class DeflatedZip:
    """What xlsxwriter's packaging asks of ``zipfile.ZipFile`` (open for writing, ``write`` a
    temporary file or ``writestr`` a part held in memory, ``close``), with the deflating done by
    threads."""

    def __init__(self, file, mode: str = "w", compression: int = zipfile.ZIP_DEFLATED, allowZip64: bool = True):  # noqa: N803 - zipfile's keyword
        if mode != "w" or compression != zipfile.ZIP_DEFLATED:
            raise ValueError("DeflatedZip only writes deflated members")
        self.compression = compression
        self._file = file
        self._members: list[tuple[zipfile.ZipInfo, Future]] = []
        self._pool = ThreadPoolExecutor(DEFLATE_THREADS, thread_name_prefix="consolidate-deflate")

    def writestr(self, info: zipfile.ZipInfo, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._submit(info, data)

    def write(self, filename: str, arcname: str) -> None:
        """A part xlsxwriter wrote to a temporary file (its default, not in-memory, mode)."""
        info = zipfile.ZipInfo.from_file(filename, arcname)  # date and mode as zipfile takes them
        with open(filename, "rb") as handle:
            self._submit(info, handle.read())

    def _submit(self, info: zipfile.ZipInfo, data: bytes) -> None:
        # At most one part waits for a thread beside those being deflated: the parts are read
        # one by one, not all held in memory at once.
        pending = [future for _, future in self._members if not future.done()]
        if len(pending) > DEFLATE_THREADS:
            pending[0].result()
        self._members.append((info, self._pool.submit(_deflate, data)))

    def close(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                handle = self._file
                if not hasattr(handle, "write"):
                    handle = stack.enter_context(open(handle, "wb"))  # noqa: SIM115 - closed by the stack
                _write_members(handle, ((info, future.result()) for info, future in self._members))
        finally:
            self._pool.shutdown(cancel_futures=True)


def _deflate(data: bytes) -> tuple[bytes, int, int]:
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(), zlib.crc32(data), len(data)


def _write_members(handle, members: Iterator[tuple[zipfile.ZipInfo, tuple[bytes, int, int]]]) -> None:
    """Local headers and data, then the central directory, as zipfile writes them (no zip64:
    a workbook part of 4 GB is far beyond what Excel opens)."""
    offset = 0
    directory = []
    for info, (packed, crc, size) in members:
        if size >= zipfile.ZIP64_LIMIT or len(packed) >= zipfile.ZIP64_LIMIT or offset >= zipfile.ZIP64_LIMIT:
            raise zipfile.LargeZipFile(f"{info.filename} is too large for a workbook")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.CRC, info.compress_size, info.file_size = crc, len(packed), size
        info.external_attr = info.external_attr or 0o600 << 16  # ?rw-------, as zipfile sets it
        header = info.FileHeader(zip64=False)
        handle.write(header)
        handle.write(packed)
        directory.append((info, offset))
        offset += len(header) + len(packed)
    start = offset
    for info, at in directory:
        name = info.filename.encode("utf-8")
        flags = info.flag_bits | (0x800 if not info.filename.isascii() else 0)
        date_time = info.date_time
        dos_date = (date_time[0] - 1980) << 9 | date_time[1] << 5 | date_time[2]
        dos_time = date_time[3] << 11 | date_time[4] << 5 | (date_time[5] // 2)
        record = _CENTRAL.pack(
            b"PK\x01\x02", info.create_version, info.create_system, info.extract_version, info.reserved,
            flags, info.compress_type, dos_time, dos_date, info.CRC, info.compress_size, info.file_size,
            len(name), 0, 0, 0, 0, info.external_attr, at,
        )  # fmt: skip
        handle.write(record)
        handle.write(name)
        offset += len(record) + len(name)
    count = len(directory)
    handle.write(_END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, offset - start, start, 0))


@contextlib.contextmanager
def parallel_deflate(module) -> Iterator[None]:
    """``module.ZipFile`` is ``DeflatedZip`` meanwhile (xlsxwriter.workbook's, while it stores)."""
    original = module.ZipFile
    module.ZipFile = DeflatedZip
    try:
        yield
    finally:
        module.ZipFile = original
