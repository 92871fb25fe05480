"""One spool segment file: framing of its records, and reading them back with torn tails detected.

Each record is one line ``FW1 <length hex> <crc32 hex> <JSON>\\n``: the length and the CRC-32 of the
JSON bytes come first, so a record cut short by SIGKILL (a torn tail) or damaged on disk is recognised
and skipped instead of being parsed as garbage. A segment is written by one process only (it holds an
``flock`` on it), through a shared memory mapping of the preallocated file, and read with ``pread`` from
any offset; a zero byte where a record would start is the segment's unwritten rest.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"FW1 "
MAX_RECORD_BYTES = 1 << 20
"""A longer record is refused when written and treated as damage when read."""

_HEADER_MAX = len(MAGIC) + 8 + 1 + 8 + 1
_HEADER = re.compile(rb"FW1 ([0-9a-f]{1,8}) ([0-9a-f]{8}) ")
"""A record's header, read by one C call (``frame`` writes lower-case hex, the CRC in exactly 8 digits)."""
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
"""What ``json.dumps(obj, ensure_ascii=False, allow_nan=False)`` builds on every call, built once."""


def frame(obj: Any) -> bytes:
    """``obj`` as one spool record. Raises ``ValueError`` when its JSON exceeds :data:`MAX_RECORD_BYTES`.

    Example::

        >>> frame({"a": 1})
        b'FW1 8 fba18e97 {"a": 1}\\n'
    """
    payload = _ENCODER.encode(obj).encode()
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"a spool record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
    return b"%s%x %08x %s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


@dataclass
class Scan:
    """What :func:`scan` found between two offsets of a segment."""

    records: list[Any] = field(default_factory=list)
    """The decoded JSON of every intact record, in file order."""
    end: int = 0
    """Offset just past the last record read (intact or skipped as damaged)."""
    damaged: list[str] = field(default_factory=list)
    """One description per damaged record or region skipped, naming its offset."""
    blank: bool = False
    """Reading stopped at a zero byte where a record would start: the segment's unwritten rest."""


def scan(fd: int, start: int, stop: int, *, max_bytes: int = 4 << 20) -> Scan:
    """The records of ``fd`` in ``[start, stop)``, reading at most ``max_bytes`` past ``start``.

    A record that does not fit before ``stop`` (a torn tail, or the read limit) is left for later:
    ``end`` stops before it. A record whose checksum or JSON is wrong is skipped by its length; a
    header that cannot be parsed makes the rest of the range unreadable, so ``end`` jumps to ``stop``.
    The JSON of every intact record is decoded in one call (see :func:`_decode_payloads`).
    """
    limit = min(stop, start + max_bytes + _HEADER_MAX + MAX_RECORD_BYTES)
    data = os.pread(fd, limit - start, start)
    result, pos = Scan(end=start), 0
    payloads: list[bytes] = []
    offsets: list[int] = []
    while pos < len(data):
        header = _HEADER.match(data, pos)
        if header is None and data[pos] == 0:
            result.blank = True  # segments are preallocated: zeros follow the last record written
            break
        if header is None:
            if len(data) - pos < _HEADER_MAX and b"\n" not in data[pos:]:
                break  # a torn header at the end: maybe still being written, maybe cut by SIGKILL
            result.damaged.append(f"unreadable bytes from offset {start + pos} to {stop}")
            result.end = stop
            break
        body, length = header.end(), int(header[1], 16)
        if length > MAX_RECORD_BYTES:
            result.damaged.append(f"unreadable bytes from offset {start + pos} to {stop}")
            result.end = stop
            break
        if body + length + 1 > len(data):
            break
        payload = data[body : body + length]
        if zlib.crc32(payload) != int(header[2], 16) or data[body + length] != 0x0A:  # 0x0A: b"\n"
            result.damaged.append(f"a damaged record at offset {start + pos} (checksum mismatch)")
        else:
            payloads.append(payload)
            offsets.append(start + pos)
        pos = body + length + 1
        result.end = start + pos
        if pos >= max_bytes:
            break
    _decode_payloads(payloads, offsets, result)
    return result


def _decode_payloads(payloads: list[bytes], offsets: list[int], result: Scan) -> None:
    """Append the JSON of ``payloads`` to ``result.records``; a payload that is not JSON is damage.

    All of them are decoded by one ``json.loads`` of the array they make: a drain reads hundreds of
    records, and one call per record cost more than the parsing. Each payload passed its checksum, so
    it is what ``frame`` wrote, one JSON value; if the array still does not parse into one element per
    payload (a file written by something else), each payload is decoded alone and the bad ones skipped.
    """
    if not payloads:
        return
    try:
        values = json.loads(b"[" + b",".join(payloads) + b"]")
    except ValueError:
        values = None
    if isinstance(values, list) and len(values) == len(payloads):
        result.records.extend(values)
        return
    for payload, offset in zip(payloads, offsets, strict=True):
        try:
            result.records.append(json.loads(payload))
        except ValueError as exc:
            result.damaged.append(f"a damaged record at offset {offset} ({exc})")


__all__ = ["MAGIC", "MAX_RECORD_BYTES", "Scan", "frame", "scan"]
