"""Files jaxtune writes: atomic writes, sealed (checksummed) JSON, writable checks, folder locks.

One mechanism for every file a sweep leaves behind (``results.json``/``results.csv``, a
checkpoint's marker and documents):

* **Atomic writes.** :func:`stage` writes a temporary file ``.<name>.<random>.tmp`` beside the
  target (flushed and fsynced, mode ``0644`` like any other file a user reads), and
  :func:`write_atomic` moves it into place with ``os.replace``: a reader sees the old file or the
  new one, never a part. A process killed mid-write leaves only such a temporary file;
  :func:`remove_temporaries` deletes them and :func:`is_temporary` tells them apart.
* **Sealed JSON text.** :func:`sealing` wraps a writer so that the file ends with
  ``"checksum": "sha256:<hex>"``, the SHA-256 of every byte before it; :func:`read_sealed`
  refuses a file whose bytes changed (an edited value, a flipped bit) with a one-line
  :class:`DamagedFileError` naming the file. The file stays plain, human-readable JSON (the
  checksum is one more top-level key, which older readers ignore).
* **Sealed JSON values.** For documents another library serializes (Orbax's JSON items),
  :func:`seal_document` adds a checksum of the canonical JSON of the value and
  :func:`check_document` verifies it.
* **Writable checks and locks.** :func:`check_writable` finds an output folder that cannot be
  written *before* any work (a read-only folder, a path under a file, an empty path);
  :class:`FolderLock` holds an exclusive ``fcntl.flock`` lock on a folder so a second writer
  is refused instead of mixing its files with the first one's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CHECKSUM_KEY",
    "FILE_MODE",
    "DamagedFileError",
    "FolderBusyError",
    "FolderLock",
    "WriteError",
    "check_document",
    "check_writable",
    "document_checksum",
    "is_temporary",
    "read_sealed",
    "remove_temporaries",
    "seal_document",
    "sealing",
    "stage",
    "write_atomic",
]

#: The top-level key of a sealed JSON document that holds its checksum.
CHECKSUM_KEY = "checksum"
#: Permissions of every file jaxtune writes (as matplotlib's figures: owner rw, others r).
FILE_MODE = 0o644
_SEAL_HEAD = f',\n"{CHECKSUM_KEY}": "sha256:'.encode()
_SEAL_TAIL = re.compile(rb'([0-9a-f]{64})"\}\n\Z')


class DamagedFileError(ValueError):
    """A file jaxtune wrote was changed or damaged afterwards (checksum, syntax or layout)."""


class FolderBusyError(ValueError):
    """Another process holds the folder's :class:`FolderLock`."""


class WriteError(OSError):
    """A file jaxtune had to write could not be (a full or read-only disk); the message says
    what was kept and how to go on."""


# --------------------------------------------------------------------------------------------
# Atomic writes and their temporary files


def is_temporary(path: str | os.PathLike[str], name: str) -> bool:
    """Whether ``path`` is a temporary file :func:`stage` made for a file called ``name``."""
    return Path(path).name.startswith(f".{name}.")


def remove_temporaries(directory: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Deletes the temporary files a killed writer of ``names`` left in ``directory``.

    Returns:
      The deleted paths (none when the folder does not exist).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = list(names)
    removed = []
    for path in directory.iterdir():
        if path.is_file() and any(is_temporary(path, name) for name in names):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def stage(path: str | os.PathLike[str], write: Callable[[IO[str]], None]) -> str:
    """Writes a temporary file beside ``path`` with ``write(file)``; returns its name.

    The file is flushed, fsynced and given mode :data:`FILE_MODE`; it is removed again if
    ``write`` (or anything else) fails.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return temporary


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[str]], None]) -> None:
    """Writes ``path`` atomically: :func:`stage`, then ``os.replace`` into place."""
    temporary = stage(path, write)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------------------------
# Sealed JSON text


class _HashingWriter:
    """A text file that hashes the UTF-8 bytes written through it."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, text: str) -> int:
        self.digest.update(text.encode("utf-8"))
        return self.file.write(text)


def sealing(write_body: Callable[[Any], None]) -> Callable[[IO[str]], None]:
    """A writer (for :func:`stage`) of a sealed JSON document.

    Args:
      write_body: writes the text of a JSON *object without its closing brace* (``{"a": 1``)
        through ``file.write``; the seal ``,\\n"checksum": "sha256:<hex>"}\\n`` follows, the hex
        being the SHA-256 of the body's UTF-8 bytes.
    """

    def write(file: IO[str]) -> None:
        hashing = _HashingWriter(file)
        write_body(hashing)
        file.write(f'{_SEAL_HEAD.decode()}{hashing.digest.hexdigest()}"}}\n')

    return write


def read_sealed(path: str | os.PathLike[str], *, required: bool = True
                ) -> tuple[dict[str, Any], bool]:
    """Reads a JSON object written through :func:`sealing` and checks its checksum.

    Args:
      path: the file.
      required: refuse a file without a seal (else it is returned, flagged unsealed: a file of
        an older writer).

    Returns:
      ``(document, sealed)``: the object without its ``checksum`` key, and whether it had one.

    Raises:
      FileNotFoundError: no such file.
      DamagedFileError: the file is not JSON, not an object, its bytes do not match its
        checksum, or it has no seal although ``required``.
    """
    path = Path(path)
    data = path.read_bytes()
    where = data.rfind(_SEAL_HEAD)
    sealed = where >= 0
    if sealed:
        match = _SEAL_TAIL.match(data, where + len(_SEAL_HEAD))
        if match is None or hashlib.sha256(data[:where]).hexdigest() != match.group(1).decode():
            raise DamagedFileError(
                f"{path} is damaged: its content does not match its checksum (the file was "
                "edited or corrupted after jaxtune wrote it)"
            )
    try:
        document = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged: not JSON ({error})") from error
    if not isinstance(document, dict):
        raise DamagedFileError(f"{path} is damaged: not a JSON object")
    if not sealed and (required or CHECKSUM_KEY in document):
        raise DamagedFileError(f"{path} is damaged: its checksum is missing or unreadable")
    document.pop(CHECKSUM_KEY, None)
    return document, sealed


# --------------------------------------------------------------------------------------------
# Sealed JSON values (documents another library writes)


def document_checksum(document: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of ``document`` without its checksum key."""
    body = {key: value for key, value in document.items() if key != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with its :func:`document_checksum` under :data:`CHECKSUM_KEY`."""
    return {**document, CHECKSUM_KEY: document_checksum(document)}


def check_document(document: Any, source: str) -> dict[str, Any]:
    """The document without its checksum, after checking it (see :func:`seal_document`).

    Raises:
      DamagedFileError: not an object, no checksum, or a checksum that does not match; the
        message names ``source``.
    """
    if not isinstance(document, dict) or CHECKSUM_KEY not in document:
        raise DamagedFileError(f"{source} is damaged: its checksum is missing")
    try:
        expected = document_checksum(document)
    except (TypeError, ValueError) as error:
        raise DamagedFileError(f"{source} is damaged: {error}") from error
    if document[CHECKSUM_KEY] != expected:
        raise DamagedFileError(
            f"{source} is damaged: its content does not match its checksum (the file was "
            "edited or corrupted after jaxtune wrote it)"
        )
    return {key: value for key, value in document.items() if key != CHECKSUM_KEY}


# --------------------------------------------------------------------------------------------
# Output folders: writable checks and locks


def check_writable(directory: str | os.PathLike[str], what: str) -> Path:
    """Checks that ``directory`` can be created (if missing) and written, creating nothing.

    Run before any training, so a sweep never trains for nothing. A probe file is written and
    deleted in the folder, or, when it does not exist yet, in its nearest existing parent
    (where the folder would be created).

    Args:
      directory: the output folder.
      what: how the message names it (``"--out"``, ``"--checkpoint-dir"``).

    Returns:
      The folder's path.

    Raises:
      ValueError: the path is empty, exists and is not a folder, lies under a file, or cannot
        be written (read-only, no permission, disk full); one line naming ``what``, the path and
        the cause.
    """
    if str(directory).strip() == "":
        raise ValueError(f"{what}: the path is empty; give a folder, e.g. {what} runs/sweep")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} exists and is not a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what}: {str(path)!r} lies under {str(existing)!r}, which is a file")
    try:
        descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".jaxtune-write-check.")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(
            f"{what}: cannot write into {str(existing)!r} ({error.strerror or error}); give a "
            "folder you can write"
        ) from error
    return path


class FolderLock:
    """An exclusive, non-blocking lock on a folder (``fcntl.flock`` on the folder itself).

    No file is added to the folder. The lock is the process's: it ends when the process does (a
    killed process never leaves a folder locked). Where ``fcntl`` is missing (Windows), or the
    file system cannot lock a folder, the lock does nothing.

    Example::

        with FolderLock("runs/x", "--out"):
            results.save("runs/x", lock=False)
    """

    def __init__(self, directory: str | os.PathLike[str], what: str) -> None:
        self.directory = Path(directory)
        self.what = what
        self._descriptor: int | None = None

    def acquire(self) -> FolderLock:
        """Takes the lock (creating the folder if needed).

        Raises:
          FolderBusyError: another process (or another lock of this one) holds it.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderBusyError(
                f"{self.what}: {str(self.directory)!r} is being written by another jaxtune "
                "process; wait for it to finish or choose another folder"
            ) from None
        except OSError:  # pragma: no cover - a file system without folder locks
            os.close(descriptor)
            return self
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        """Releases the lock."""
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor ends its flock
            self._descriptor = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
