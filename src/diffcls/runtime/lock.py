"""One writer per output: an exclusive lock on every folder or file set that a command writes.

Atomic writes keep each file whole; they cannot keep a folder whole when two runs write into it (one run's config
beside another's weights). So every writing command first takes an exclusive lock on its target and holds it to
the end: ``diffcls train`` on its ``--output`` folder, ``diffcls eval`` on its results file (with the per-image log
and ``--save-probs`` beside it), ``diffcls bench`` on its folder. A second command on a busy target stops at once
with a one-line :class:`OutputBusy` naming the holder and changes nothing. Readers (``eval`` reading a
checkpoint, ``predict``) take no lock, so they never wait and never make anyone wait.

The lock is ``fcntl.flock`` on a small file: ``FOLDER/.diffcls.lock`` for a folder, ``.NAME.lock`` beside a file.
The kernel releases a flock when the last descriptor of its holder closes, which includes SIGKILL and a crash,
so a dead holder's lock is free at once and nothing has to guess whether a pid is still alive. The file also
records who holds it (pid, host, command, start time) for the message a refused run prints; a dead holder leaves
the file behind with its last words, and the next run takes it over. A clean release deletes the file, so a
finished run leaves its outputs exactly as they were before locks existed.

Under torchrun rank 0 alone takes the lock (it alone writes) and tells the other ranks whether it got it, so
every rank of a refused job stops with the same line.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diffcls.errors import DiffclsError

if TYPE_CHECKING:  # no torch import at run time: the lock is taken before anything heavy
    from diffcls.runtime.distributed import Dist

FOLDER_LOCK_NAME = ".diffcls.lock"


class OutputBusy(DiffclsError):
    """The target is held by another live process."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded in its file."""

    pid: int
    host: str
    command: str
    started: str  # UTC, "YYYY-MM-DD HH:MM:SS UTC"

    @classmethod
    def me(cls) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=_command_line(),
            started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started}: {self.command}"


def _command_line() -> str:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "cli.py", "-c", "-m"):
        program = "diffcls"
    return " ".join([program, *sys.argv[1:]])


class OutputLock:
    """An exclusive, non-blocking flock guarding ``target`` (a folder, or a file and what is written beside it).

    ``acquire()`` raises :class:`OutputBusy` at once when another process holds it; ``release()`` deletes the
    lock file and, for a folder that ``acquire()`` created and nothing else filled, the folder too (a run refused
    for bad input leaves no trace).
    """

    def __init__(self, target: str | Path, folder: bool):
        self.target = Path(target)
        self.folder = folder
        self.path = self.target / FOLDER_LOCK_NAME if folder else self.target.parent / f".{self.target.name}.lock"
        self._fd: int | None = None
        self._created_folder = False

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this lock")
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputBusy(
                    f"{self.target} is in use by another diffcls run "
                    f"({holder.describe() if holder else 'holder not recorded yet'}); "
                    "wait for it to end or choose another output"
                ) from None
            # A holder that released between our open and our flock has unlinked this file: a newcomer may lock
            # a fresh file at the same path, so only a lock on the file the path names now counts.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        self._fd = fd
        _write_holder(fd, Holder.me())

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked, so no one else can hold this path's file
        finally:
            os.close(self._fd)
            self._fd = None
        if self._created_folder:
            try:
                self.target.rmdir()  # only if empty
            except OSError:
                pass

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _open(self) -> int:
        """The lock file's descriptor, creating the file (and its folder) when missing."""
        parent = self.path.parent
        # A releasing holder removes the folder it created when empty, so the folder can vanish between our mkdir
        # and our open (or appear between our check and our mkdir): retry those races a few times.
        for _ in range(50):
            if not parent.is_dir():
                try:
                    parent.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise DiffclsError(f"cannot create output folder {parent}: {e.strerror or e}") from None
                try:
                    os.mkdir(parent)
                    self._created_folder = self._created_folder or self.folder
                except FileExistsError as e:
                    if parent.exists() and not parent.is_dir():  # a file: else another process made it first
                        raise DiffclsError(f"cannot create output folder {parent}: {e.strerror or e}") from None
                except OSError as e:
                    raise DiffclsError(f"cannot create output folder {parent}: {e.strerror or e}") from None
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise DiffclsError(f"cannot write to folder {parent}: {e.strerror or e}") from None
        raise DiffclsError(f"cannot create {self.path}: its folder keeps disappearing")


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_holder(fd: int, holder: Holder) -> None:
    data = json.dumps(holder.__dict__).encode() + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_holder(fd: int) -> Holder | None:
    try:
        return Holder(**json.loads(os.pread(fd, 4096, 0)))
    except (OSError, ValueError, TypeError):  # not written yet, or torn
        return None


def read_holder(target: str | Path, folder: bool) -> Holder | None:
    """Who the lock file of ``target`` names (a live holder, or the last words of a dead one); None if none."""
    path = OutputLock(target, folder).path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


@contextmanager
def exclusive(
    folders: Sequence[str | Path] = (), files: Sequence[str | Path | None] = (), dist: Dist | None = None
) -> Iterator[None]:
    """Hold the locks of ``folders`` and ``files`` (None entries skipped) for the body of the ``with``.

    All or nothing: when one target is busy, the ones taken already are released and every rank raises the same
    :class:`OutputBusy`. Under torchrun (``dist``) rank 0 alone locks; the outcome is broadcast to the other
    ranks. ``dist`` None: a single process.
    """
    main = dist is None or dist.is_main
    locks = [OutputLock(f, folder=True) for f in folders] + [OutputLock(f, folder=False) for f in files if f]
    error = None
    if main:
        try:
            for lock in locks:
                lock.acquire()
        except DiffclsError as e:
            error = (type(e) is OutputBusy, str(e))
            for lock in locks:
                lock.release()
    if dist is not None:
        error = dist.broadcast(error)
    if error:
        busy, message = error
        raise (OutputBusy if busy else DiffclsError)(message)
    try:
        yield
    finally:
        for lock in reversed(locks):
            lock.release()  # a no-op on ranks that took none
