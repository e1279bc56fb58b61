"""Saving and loading a sweep's results: ``results.json`` (sealed) and ``results.csv``.

Host-only. :class:`jaxtune.results.Results` builds the document and the CSV text and calls
:func:`write`; :meth:`jaxtune.results.Results.load` calls :func:`read` and :func:`parse`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from jaxtune import jsonio, storage
from jaxtune.member_result import MemberResult

__all__ = ["FORMAT", "RESULTS_CSV", "RESULTS_JSON", "document", "parse", "read", "write"]

#: The ``"format"`` key of ``results.json``; bumped when the layout changes incompatibly.
FORMAT = "jaxtune.results/1"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"


def document(rows: Sequence[MemberResult], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document written to ``results.json``.

    Args:
        rows: The members.
        metadata: Canonical metadata.

    Returns:
        ``{"format": FORMAT, "metadata": ..., "rows": [...]}``, strict-JSON safe.
    """
    return {
        "format": FORMAT,
        "metadata": jsonio.encode(metadata),
        "rows": [row.to_dict() for row in rows],
    }


def parse(
    document: Mapping[str, Any], source: str = "document"
) -> tuple[list[MemberResult], Any]:
    """Inverse of :func:`document`: the members and the (decoded) metadata.

    Args:
        document: A parsed ``results.json``.
        source: What to call the document in error messages.

    Returns:
        ``(members, metadata)``.

    Raises:
        ValueError: For a document that is not jaxtune results, of another format version,
            or with a malformed row.
    """
    if not isinstance(document, Mapping) or "format" not in document:
        raise ValueError(
            f"{source} is not a jaxtune results file: no 'format' key (expected {FORMAT!r})"
        )
    found = document["format"]
    if found != FORMAT:
        if isinstance(found, str) and found.startswith("jaxtune.results/"):
            raise ValueError(
                f"{source} has format {found!r}, which this version of jaxtune cannot read "
                f"(it reads {FORMAT!r}); upgrade jaxtune"
            )
        raise ValueError(
            f"{source} is not a jaxtune results file: format {found!r}, expected {FORMAT!r}"
        )
    rows, metadata = document.get("rows"), document.get("metadata", {})
    if not isinstance(rows, list) or not isinstance(metadata, dict):
        raise ValueError(f"{source}: 'rows' must be a list and 'metadata' an object")
    members = []
    for i, data in enumerate(rows):
        try:
            members.append(MemberResult.from_dict(data))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: row {i} is malformed: {error}") from error
    return members, jsonio.decode(metadata, tuple)


def write(
    directory: str | os.PathLike[str], document: Mapping[str, Any], csv_text: str, *, lock: bool
) -> Path:
    """Writes ``results.json`` and ``results.csv`` into ``directory`` (created if needed).

    See :meth:`jaxtune.results.Results.save` for the guarantees (atomic files, checksum, lock).

    Args:
        directory: Output folder.
        document: The output of :func:`document`.
        csv_text: The text of ``results.csv``.
        lock: Take the folder's lock while writing (``False`` when the caller holds it).

    Returns:
        The folder's path.

    Raises:
        jaxtune.storage.FolderBusyError: Another process holds the folder's lock.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with storage.FolderLock(directory, "Results.save") if lock else contextlib.nullcontext():
        _write_files(directory, document, csv_text)
    return directory


def _write_files(directory: Path, document: Mapping[str, Any], csv_text: str) -> None:
    def write_json(file: Any) -> None:
        # One member per line: compact for large sweeps, still readable and diff-friendly.
        file.write(f'{{"format": {json.dumps(document["format"])},\n"metadata": ')
        json.dump(document["metadata"], file, allow_nan=False, sort_keys=True)
        file.write(',\n"rows": [')
        for i, row in enumerate(document["rows"]):
            file.write(",\n" if i else "\n")
            json.dump(row, file, allow_nan=False)
        file.write("\n]")  # the seal closes the object

    def write_csv(file: IO[str]) -> None:
        file.write(csv_text)

    staged: list[tuple[str, Path]] = []
    try:
        for name, write_file in ((RESULTS_JSON, storage.sealing(write_json)),
                                 (RESULTS_CSV, write_csv)):
            staged.append((storage.stage(directory / name, write_file), directory / name))
        for temporary, final in staged:
            os.replace(temporary, final)
    except BaseException:
        # Clean up temporaries whatever went wrong (also KeyboardInterrupt), then re-raise.
        for temporary, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        raise


def read(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """Reads a ``results.json`` written by :func:`write`, checking its checksum when it has one.

    Args:
        path: The folder given to :func:`write`, or its ``results.json``.

    Returns:
        ``(document, source)``: the parsed JSON and the file's path as text.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: For a corrupt or edited file (one line naming it).
    """
    path = Path(path)
    file = path / RESULTS_JSON if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"no results at {file}: expected a folder written by Results.save or its "
            f"{RESULTS_JSON}"
        )
    try:
        document, _ = storage.read_sealed(file, required=False)
    except storage.DamagedFileError as error:
        raise ValueError(f"{error}; this is not a jaxtune results file as jaxtune wrote "
                         "it") from error
    unknown = set(document) - {"format", "metadata", "rows"}
    if unknown and "format" in document:
        raise ValueError(f"{file} is damaged: unexpected entries {sorted(unknown)}")
    return document, str(file)
