"""A local, append-only spool of telemetry entries: written without a database round trip, read back in order.

A :class:`Spool` is a directory of *segment* files (``<time>-<pid>-<n>.spool``). Each process appends to
its own segments and keeps an ``flock`` on every segment it owns. A segment is allocated on disk when it
is made (``posix_fallocate``, ``rotate_bytes``; a full disk is an error then, never a SIGBUS later) and
mapped shared into memory: an append is a copy into the mapping, no system call and no ``fsync``. What
was copied is in the kernel's page cache, so it survives the process being killed, as a ``write`` would;
the unwritten rest of a segment is zeros, where reading stops. :meth:`Spool.drain` hands entries, oldest
first, to a writer (the store) and then forgets them: a fully drained segment is zeroed from its start,
or deleted once appends moved on to a newer one. A segment whose
lock can be taken belongs to a process that died: :meth:`Spool.drain` adopts it, replays it and deletes
it, so records of a crashed process reach the store at the next pass of any drainer of the directory:
the next process to open the spool, or one already running that records again (a Dask worker that
outlived another). Replaying may write an entry a
second time (killed after the store committed, before the spool forgot); the store's writes are
idempotent (upserts keyed by ``flow_run_id`` and ``(task_run_id, execution_id, attempt)``), so nothing
appears twice.

The spool is bounded: an entry that would take this process's undrained bytes past ``max_bytes`` is
dropped (counted in :attr:`Spool.dropped`, logged once); :meth:`Spool.append` never blocks. Every file is
input an attacker may have written: the directory must belong to this user and not be writable by
group or others, segments are opened without following links, and damaged records are skipped and logged.

Example::

    >>> import tempfile
    >>> from datetime import datetime, timezone
    >>> from forewarn.store.spool import RunEnd, Spool
    >>> spool = Spool(tempfile.mkdtemp() + "/spool")
    >>> spool.append("run_end", RunEnd("f1", "COMPLETED", datetime(2026, 1, 1, tzinfo=timezone.utc)))
    True
    >>> batches = []
    >>> spool.drain(batches.append)
    1
    >>> batches[0][0][0], spool.pending
    ('run_end', 0)
    >>> spool.close()
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forewarn.errors import ConfigurationError, InvalidRecordError
from forewarn.store._spool_codec import RunEnd, decode_entry, encode_entry
from forewarn.store._spool_file import frame, scan

logger = logging.getLogger("forewarn.telemetry")

Entry = tuple[str, Any]
"""A spooled ``(kind, record)``: see :mod:`forewarn.store._spool_codec`."""

SUFFIX = ".spool"


def spool_directory(base: str | os.PathLike[str], url: str) -> Path:
    """The spool directory of the store at ``url`` under ``base``: one per store, so entries never cross stores.

    Example::

        >>> spool_directory("/var/spool/forewarn", "sqlite:///t.db").parent
        PosixPath('/var/spool/forewarn')
    """
    return Path(base) / hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass
class _Segment:
    path: Path
    fd: int
    mapped: mmap.mmap
    """The whole file, mapped shared: an append is a memory copy into the page cache, no system call."""
    capacity: int
    size: int = 0
    drained: int = 0

    def release(self, *, unlink: bool) -> None:
        if unlink:
            self.path.unlink(missing_ok=True)
        self.mapped.close()
        os.close(self.fd)


class Spool:
    """The spool in ``directory`` (created 0700 if missing); ``max_bytes`` bounds this process's backlog.

    ``setting`` names where ``directory`` came from in errors. Raises
    :class:`~forewarn.errors.ConfigurationError` when the directory is a link, is not this user's, or is
    writable by group or others.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 64 << 20,
        rotate_bytes: int = 1 << 20,
        setting: str = "FOREWARN_SPOOL_DIR",
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.dropped = 0
        self.damaged = 0
        self._setting = setting
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._seq = 0
        self._backlog = 0
        self._count = 0
        self._open_directory()
        self._segments = [self._new_segment()]
        self._closed = False

    @property
    def pending(self) -> int:
        """Entries this process appended that the store does not hold yet."""
        return self._count

    def append(self, kind: str, record: Any) -> bool:
        """Write one entry at the end of this process's segment; False (counted, logged once) if the spool is full."""
        data = frame(encode_entry(kind, record))
        size = len(data)
        with self._lock:
            if self._closed:
                raise ValueError(f"the spool in {self.directory} was closed")
            if self._backlog + size > self.max_bytes:
                self._drop(kind)
                return False
            active = self._segments[-1]
            if active.size + size > active.capacity:  # full: appends move to a new segment
                active = self._new_segment(size)
                self._segments.append(active)
            # A copy into the shared mapping: no system call, so the GIL is not given up mid-task. Once
            # it is done the page cache holds the record, and it survives SIGKILL as a write() would.
            active.mapped[active.size : active.size + size] = data
            active.size += size
            self._backlog += len(data)
            self._count += 1
        return True

    def drain(self, write: Callable[[list[Entry]], None], *, adopt: bool = True) -> int:
        """Hand every entry to ``write`` in batches, oldest first; return how many were written.

        Segments of dead processes are replayed first (when ``adopt``), then this process's. An entry is
        forgotten only after ``write`` returned; if it raises, the entries of that batch stay and the error
        propagates. One drain runs at a time.
        """
        with self._drain_lock:
            if self._closed:
                return 0
            written = self._adopt_orphans(write) if adopt else 0
            for segment in list(self._segments):
                written += self._drain_own(segment, write)
            return written

    def close(self) -> None:
        """Release this process's segments, leaving undrained ones for the next process; closing twice is fine."""
        with self._drain_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            for segment in self._segments:
                segment.release(unlink=segment.size == segment.drained)

    # -- this process's segments -----------------------------------------------------------------------

    def _drain_own(self, segment: _Segment, write: Callable[[list[Entry]], None]) -> int:
        written = 0
        while True:
            with self._lock:
                stop = segment.size
            if segment.drained >= stop:
                break
            found = scan(segment.fd, segment.drained, stop)
            entries = self._decode(found.records, segment.path)
            if entries:
                write(entries)
            written += len(found.records)
            self._note_damage(found.damaged, segment.path)
            with self._lock:
                segment.drained = found.end
                self._count -= len(found.records)
        self._forget_drained(segment)
        return written

    def _forget_drained(self, segment: _Segment) -> None:
        """Truncate or delete what the store now holds, and move appends to a new segment when this one is big."""
        with self._lock:
            if segment.drained < segment.size or self._closed:
                return
            self._backlog -= segment.size
            if segment is not self._segments[-1]:
                segment.release(unlink=True)
                self._segments.remove(segment)
            elif segment.size >= self.rotate_bytes:
                self._segments.append(self._new_segment())
                segment.release(unlink=True)
                self._segments.remove(segment)
            else:
                # Zeroed from the start, so a replay after SIGKILL (even one mid-way through this)
                # stops at offset 0: nothing the store holds is written twice, nothing stale follows
                # the next records.
                segment.mapped[: segment.size] = bytes(segment.size)
                segment.size = segment.drained = 0

    def _new_segment(self, least: int = 0) -> _Segment:
        """A new segment, locked before it gets its visible name so no other process can adopt it.

        Its ``max(rotate_bytes, least)`` bytes are allocated on disk (``posix_fallocate``: a full disk is
        an ``OSError`` here, never a SIGBUS on a later append) and mapped; unwritten bytes are zeros.
        """
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        hidden = self.directory / f".{name}.new"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o600)
        try:
            capacity = max(self.rotate_bytes, least, 1)
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, capacity)
            else:  # macOS: no posix_fallocate; writing the zeros allocates the blocks as well
                os.pwrite(fd, bytes(capacity), 0)
            mapped = mmap.mmap(fd, capacity)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, self.directory / name)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        return _Segment(self.directory / name, fd, mapped, capacity)

    def _drop(self, kind: str) -> None:
        self.dropped += 1
        if self.dropped == 1:
            logger.warning(
                "forewarn's telemetry spool %s is full (%d bytes waiting for the store): this %s and further "
                "records are dropped and counted until the store catches up",
                self.directory,
                self._backlog,
                kind,
            )

    # -- segments of dead processes --------------------------------------------------------------------

    def _adopt_orphans(self, write: Callable[[list[Entry]], None]) -> int:
        own = {segment.path.name for segment in self._segments}
        written = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path.name not in own:
                written += self._replay_orphan(path, write)
        return written

    def _replay_orphan(self, path: Path, write: Callable[[list[Entry]], None]) -> int:
        """Replay and delete the segment at ``path`` if its process is gone (its lock is free)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0  # another process adopted it first
        except OSError as exc:
            self._note_damage([f"it cannot be opened ({exc.strerror})"], path)
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its process is alive
            info = os.fstat(fd)
            if info.st_nlink == 0:
                return 0  # adopted and deleted by another process while we waited
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                self._note_damage(["it is not a regular file of this user; left alone"], path)
                return 0
            written = self._replay_fd(fd, info.st_size, path, write)
            path.unlink(missing_ok=True)
            return written
        finally:
            os.close(fd)

    def _replay_fd(self, fd: int, size: int, path: Path, write: Callable[[list[Entry]], None]) -> int:
        written, offset = 0, 0
        while offset < size:
            found = scan(fd, offset, size)
            if found.end == offset and found.blank:  # the unwritten, zeroed rest of the segment
                break
            if found.end == offset:  # a torn last record: its process was killed while writing it
                self._note_damage([f"a torn last record of {size - offset} bytes at offset {offset}"], path)
                break
            entries = self._decode(found.records, path)
            if entries:
                write(entries)
            written += len(entries)
            self._note_damage(found.damaged, path)
            offset = found.end
        return written

    # -- checks --------------------------------------------------------------------------------------

    def _decode(self, records: list[Any], path: Path) -> list[Entry]:
        entries = []
        for obj in records:
            try:
                entries.append(decode_entry(obj))
            except InvalidRecordError as exc:
                self._note_damage([f"an invalid entry ({exc})"], path)
        return entries

    def _note_damage(self, problems: list[str], path: Path) -> None:
        for problem in problems:
            self.damaged += 1
            logger.warning("forewarn skipped %s in the telemetry spool file %s", problem, path)

    def _open_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.directory)
        except OSError as exc:
            expected = f"a directory forewarn can create ({exc.strerror})"
            raise ConfigurationError(self._setting, str(self.directory), expected) from None
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigurationError(self._setting, str(self.directory), "a directory, not a link or a file")
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise ConfigurationError(
                self._setting,
                str(self.directory),
                f"a directory owned by this user and not writable by group or others (it has mode "
                f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid})",
            )


__all__ = ["Entry", "RunEnd", "Spool", "spool_directory"]
