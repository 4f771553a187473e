"""The second core for storing the workbook: the package's parts deflated in pieces by two
threads, 明细's rows deflated by the child that renders them (pipeline/offload.py, workbook.py).

Compressing the package's 80 MB of XML takes about a second at province scale, one part after
another in xlsxwriter's ``zipfile.ZipFile``. ``DeflatedZip`` stands in for it while the workbook
is stored (``parallel_deflate``), and writes the parts in xlsxwriter's order with zipfile's
level, dates and attributes. Three things make it faster:

- Two threads deflate (zlib lets go of the GIL while it compresses).
- A part larger than ``PIECE_BYTES`` is cut into pieces that both threads deflate at once:
  otherwise one thread is still busy with 汇总表's 33 MB long after the other is done.
- 明细's 41 MB are deflated by the child that renders them (``deflate_apart``), which has time to
  spare while this process writes the other sheets; 5 MB come back instead of 41. xlsxwriter
  writes the sheet's part itself, so the sheet holds a ``Segment``'s placeholder where the rows
  go, and ``DeflatedZip``, given the segment, puts the child's bytes in its place.

A member deflated in pieces is one valid raw deflate stream, as pigz makes it: each piece has a
compressor of its own (so none refers back into another), and every piece but the last ends in
a sync flush (byte-aligned, not final). Its CRC-32 is combined from the pieces' CRCs
(``crc32_combine``), so this process never reads the child's rows uncompressed. Measured at
3,000 returns (write_workbook, medians of 12, alternating): 2.75 s → 2.46 s wall, the parent's
CPU 3.35 s → 2.79 s. Either of the last two alone saves nothing: both threads were busy.
A part smaller than ``PIECE_BYTES`` is one piece: the same bytes zipfile writes
(tests/test_parallel.py). Nothing is shared through hidden state: a placeholder is the only
link between a sheet and its segment, and both are passed explicitly.
"""

from __future__ import annotations

import contextlib
import functools
import struct
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

DEFLATE_THREADS = 2
DEFLATE_LEVEL = 6  # zlib's default, which zipfile uses
PIECE_BYTES = 8 << 20  # a larger part is deflated in pieces of about this size, by both threads
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_SEGMENT_TRAILER = struct.Struct("<LQ")  # after a segment's deflated bytes: their CRC-32 and length
_CRC_POLYNOMIAL = 0xEDB88320  # CRC-32's, bit-reversed as zlib computes it


@dataclass(frozen=True)
class Segment:
    """The middle of a zip member, deflated elsewhere: raw deflate ending in a sync flush
    (byte-aligned, not final), with the CRC-32 and length of the bytes it stands for.

    ``placeholder`` is written where those bytes belong (an XML comment: cell data is always
    escaped, so no sheet holds one of its own); ``DeflatedZip`` puts the segment there.
    """

    packed: bytes
    crc: int
    size: int
    placeholder: str = field(default_factory=lambda: f"<!--deflated apart {uuid.uuid4().hex}-->")

    @classmethod
    def read(cls, data: bytes) -> Segment:
        """The segment ``deflate_apart`` wrote as ``data``."""
        crc, size = _SEGMENT_TRAILER.unpack_from(data, len(data) - _SEGMENT_TRAILER.size)
        return cls(data[: -_SEGMENT_TRAILER.size], crc, size)


def deflate_apart(pieces: Iterable[str | bytes]) -> Iterator[bytes]:
    """``pieces`` (text as UTF-8) deflated as a ``Segment``, piece by piece, for another process
    to take back with ``Segment.read``: the deflated bytes, then their CRC-32 and length."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = size = 0
    for piece in pieces:
        data = piece.encode("utf-8") if isinstance(piece, str) else piece
        crc, size = zlib.crc32(data, crc), size + len(data)
        yield compressor.compress(data)
    yield compressor.flush(zlib.Z_SYNC_FLUSH)
    yield _SEGMENT_TRAILER.pack(crc, size)


Piece = Future | tuple[bytes, int, int]  # deflated bytes, CRC-32 and length of what they stand for


class DeflatedZip:
    """What xlsxwriter's packaging asks of ``zipfile.ZipFile`` (open for writing, ``write`` a
    temporary file or ``writestr`` a part held in memory, ``close``), with the deflating done by
    threads."""

    def __init__(
        self,
        file,
        mode: str = "w",
        compression: int = zipfile.ZIP_DEFLATED,
        allowZip64: bool = True,  # noqa: N803 - zipfile's keyword
        *,
        segments: Iterable[Segment] = (),
    ):
        """``segments``: deflated elsewhere, each put where a member holds its placeholder."""
        if mode != "w" or compression != zipfile.ZIP_DEFLATED:
            raise ValueError("DeflatedZip only writes deflated members")
        self.compression = compression
        self._file = file
        self._members: list[tuple[zipfile.ZipInfo, list[Piece]]] = []
        self._unplaced = {segment.placeholder.encode(): segment for segment in segments}
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
        """Deflate ``data`` in pieces: a large part cut in a few (both threads deflate 汇总表's
        33 MB, or one would be busy with it long after the other is done), a segment as it is."""
        # The parts are read one by one, not all held in memory at once: the next is read when
        # no more than one piece waits for a thread beside those being deflated.
        while len(pending := self._pending()) > DEFLATE_THREADS:
            wait(pending, return_when=FIRST_COMPLETED)
        pieces: list[Piece] = []
        head, segment, tail = self._place(data)
        if segment is not None:
            pieces += [self._pool.submit(_deflate, cut, zlib.Z_SYNC_FLUSH) for cut in _cuts(head)]
            pieces.append((segment.packed, segment.crc, segment.size))
        *middle, last = _cuts(tail)
        pieces += [self._pool.submit(_deflate, cut, zlib.Z_SYNC_FLUSH) for cut in middle]
        pieces.append(self._pool.submit(_deflate, last, zlib.Z_FINISH))
        self._members.append((info, pieces))

    def _pending(self) -> list[Future]:
        pieces = (piece for _, member in self._members for piece in member)
        return [piece for piece in pieces if isinstance(piece, Future) and not piece.done()]

    def _place(self, data: bytes) -> tuple[bytes, Segment | None, bytes]:
        """``data`` as what comes before a segment's placeholder, the segment, what comes
        after; or (b"", None, ``data``) when it holds none."""
        for placeholder, segment in self._unplaced.items():
            at = data.find(placeholder)  # ~8 ms in 33 MB, and only until every segment is placed
            if at >= 0:
                del self._unplaced[placeholder]
                return data[:at], segment, data[at + len(placeholder) :]
        return b"", None, data

    def close(self) -> None:
        try:
            if self._unplaced:
                raise ValueError("a segment deflated apart has no placeholder in any member")
            with contextlib.ExitStack() as stack:
                handle = self._file
                if not hasattr(handle, "write"):
                    handle = stack.enter_context(open(handle, "wb"))  # noqa: SIM115 - closed by the stack
                _write_members(handle, ((info, _joined(pieces)) for info, pieces in self._members))
        finally:
            self._pool.shutdown(cancel_futures=True)


def _cuts(data: bytes) -> list[memoryview]:
    """``data`` in about equal pieces of at most ``PIECE_BYTES``: one (maybe empty) if small."""
    count = max(1, -(-len(data) // PIECE_BYTES))
    size = -(-len(data) // count)
    view = memoryview(data)
    return [view[start : start + size] for start in range(0, len(data), size)] if data else [view]


def _deflate(data: bytes | memoryview, flush: int = zlib.Z_FINISH) -> tuple[bytes, int, int]:
    """``data`` deflated by a compressor of its own, so that no piece refers back into another;
    every piece but a member's last ends in a sync flush (byte-aligned, not final)."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(flush), zlib.crc32(data), len(data)


def _joined(pieces: list[Piece]) -> tuple[bytes, int, int]:
    """A member's pieces as one deflate stream, with the CRC-32 and length of the whole."""
    packed, crc, size = [], 0, 0
    for piece in pieces:
        piece_packed, piece_crc, piece_size = piece.result() if isinstance(piece, Future) else piece
        packed.append(piece_packed)
        crc, size = crc32_combine(crc, piece_crc, piece_size), size + piece_size
    return b"".join(packed), crc, size


def crc32_combine(first_crc: int, second_crc: int, second_size: int) -> int:
    """The CRC-32 of two byte strings joined, from each one's CRC-32 and the second's length
    (zlib's ``crc32_combine``, which Python's zlib does not offer): appending n bytes multiplies
    the first CRC by x^(8n) modulo CRC-32's polynomial, then adds the second's."""
    return _multiply_mod(_x_power_mod(8 * second_size), first_crc) ^ second_crc


def _multiply_mod(a: int, b: int) -> int:
    """a·b modulo CRC-32's polynomial, both bit-reversed (the top bit is x^0); ``a`` non-zero."""
    product, bit = 0, 1 << 31
    while True:
        if a & bit:
            product ^= b
            if not a & (bit - 1):
                return product
        bit >>= 1
        b = b >> 1 ^ _CRC_POLYNOMIAL if b & 1 else b >> 1


def _x_power_mod(n: int) -> int:
    """x^n modulo CRC-32's polynomial, by squaring: x^(2^k) for each bit k set in ``n``."""
    result, square = 1 << 31, 1 << 30  # x^0, x^1
    while n:
        if n & 1:
            result = _multiply_mod(square, result)
        n >>= 1
        square = _multiply_mod(square, square)
    return result


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
def parallel_deflate(module, segments: Iterable[Segment] = ()) -> Iterator[None]:
    """``module.ZipFile`` is ``DeflatedZip`` meanwhile (xlsxwriter.workbook's, while it stores),
    which puts ``segments`` in their placeholders' places.

    xlsxwriter has no hook for its zip writer but this module global, so the swap holds for the
    whole process: two workbooks stored at once by two threads would share it. The product
    stores one workbook at a time, from its main thread."""
    original = module.ZipFile
    module.ZipFile = functools.partial(DeflatedZip, segments=tuple(segments))
    try:
        yield
    finally:
        module.ZipFile = original
