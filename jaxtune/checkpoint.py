"""Checkpoint and resume a sweep with Orbax, at segment boundaries, atomically.

A checkpoint directory holds

* ``jaxtune_checkpoint.json``: the *marker*, written once (temporary file, then
  ``os.replace``) when the sweep starts: the format tag, the kind of call (``"train"`` or
  ``"tune"``), the sweep's arguments in canonical JSON and their SHA-256 fingerprint, and free
  metadata (the command line keeps its own arguments there, for ``jaxtune sweep --resume``);
* Orbax checkpoint steps ``0/``, ``1/``, ... (the last ``max_to_keep``), each with two items:
  ``document`` (JSON: where the sweep stands, every finished member's record, the running
  members' records and learning curves, a SHA-256 checksum of every array) and ``arrays`` (the
  population's parameters, optimizer states, keys, step counters and dynamic hyperparameters,
  and the final parameters of finished members when they are returned).

Orbax writes a step into a temporary folder and renames it into place once complete, so a
process killed at any moment (SIGKILL included) leaves the previous complete step. Nothing is
pickled: a checkpoint is JSON and arrays, checked on load against its format tag, its
fingerprint and its checksums, so a damaged or foreign checkpoint is a clear ``ValueError``.

What is *not* stored, and why resuming is still exact: the strategy's and the scheduler's
states. Both are pure functions of what they were told, so resuming replays them: the strategy
is asked and told again for every finished round (and must propose the same configurations: the
stored ones are compared), and a scheduler is given again the views of the segments already run
(stored in the document). Member keys derive from each member's identity and step counter, so
the restored population continues bit for bit.

Example (``train`` and ``tune`` take ``checkpoint=`` and ``resume=``)::

    ckpt = Checkpointer("runs/ckpt", every_s=30.0)
    results = jt.tune(task, split, space, num_configs=64, num_steps=500,
                      checkpoint=ckpt, resume=True)  # continues a killed run, if any
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxtune import datatree, jsonio, storage
from jaxtune.results import Results

__all__ = ["FORMAT", "MARKER", "Checkpointer", "fingerprint", "read_marker"]

#: The ``"format"`` tag of the marker and of every stored document. Version 2: member keys
#: derive from a 64-bit config hash (version 1: 31 bits), and every JSON document is sealed.
FORMAT = "jaxtune.checkpoint/2"
#: Why a checkpoint of an older format cannot be resumed, by format tag.
_OLD_FORMATS = {
    "jaxtune.checkpoint/1": (
        "it was written by jaxtune before member keys derived from a 64-bit config hash "
        "(format 1 used 31 bits), so resuming would train other members than it started; "
        "start the sweep again in a new directory"
    ),
}
#: The marker file's name inside a checkpoint directory.
MARKER = "jaxtune_checkpoint.json"


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(
            "checkpointing needs orbax-checkpoint, which is not installed: "
            "pip install 'jaxtune[checkpoint]'"
        ) from error
    return ocp


# --------------------------------------------------------------------------------------------
# JSON with exact floats (non-finite values tagged) and fingerprints


#: Kept for old import paths: the one encoding lives in :mod:`jaxtune.jsonio`.
to_json = jsonio.encode
from_json = jsonio.decode


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def fingerprint(arguments: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a call's arguments (arrays by their digest)."""
    text = json.dumps(to_json(_digest_arrays(arguments)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest_arrays(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array_sha256__": array_digest(value)}
    if isinstance(value, Mapping):
        return {str(k): _digest_arrays(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_digest_arrays(v) for v in value]
    return value


def split_digest(split: Any) -> str:
    """One digest of every array of a :class:`~jaxtune.data.Split` (``None`` parts skipped)."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"):
        part = getattr(split, name, None)
        digest.update(name.encode())
        for _, leaf_name, leaf in ([] if part is None else datatree.leaf_items(part)):
            # A dict part (jaxtune.datatree) adds each leaf's name; one array digests as ever.
            digest.update((leaf_name + array_digest(np.asarray(leaf))).encode())
    return digest.hexdigest()


def read_marker(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The marker of a checkpoint directory: format, kind, arguments, fingerprint, metadata.

    Raises:
      FileNotFoundError: the directory does not exist.
      ValueError: the directory is not a jaxtune checkpoint, or its marker is damaged or of
        another format version.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist")
    marker = directory / MARKER
    if not marker.is_file() and any(
        storage.is_temporary(path, MARKER) for path in directory.iterdir()
    ):
        raise ValueError(
            f"{str(directory)!r} holds no checkpoint yet: its sweep was killed while it wrote "
            f"its {MARKER} (only a partial temporary file is there), before any training; start "
            "the sweep again with the same arguments and this checkpoint directory"
        )
    if not marker.is_file():
        raise ValueError(
            f"{str(directory)!r} is not a jaxtune checkpoint directory (no {MARKER}); give the "
            "directory a sweep was checkpointed into"
        )
    try:
        document, sealed = storage.read_sealed(marker, required=False)
    except storage.DamagedFileError as error:
        raise ValueError(f"{error}; the checkpoint cannot be used, start the sweep again in a "
                         "new directory") from error
    found = document.get("format")
    if found in _OLD_FORMATS:
        raise ValueError(f"{marker} has format {found!r}: {_OLD_FORMATS[found]}")
    if found != FORMAT:
        raise ValueError(
            f"{marker} has format {found!r}, expected {FORMAT!r}: not a checkpoint this version "
            "of jaxtune can resume"
        )
    if not sealed:
        raise ValueError(f"{marker} is damaged: its checksum is missing; the checkpoint cannot "
                         "be used, start the sweep again in a new directory")
    for key in ("kind", "arguments", "fingerprint"):
        if key not in document:
            raise ValueError(f"{marker} is damaged: no {key!r} entry")
    return document


# --------------------------------------------------------------------------------------------
# The checkpointer


@dataclasses.dataclass(frozen=True)
class Checkpointer:
    """Where and how often a sweep checkpoints.

    A save happens at a segment boundary (and at the end of every chunk, round and call) when
    ``every_segments`` segments ran since the last save, or ``every_s`` seconds passed, whichever
    comes first (``None`` disables that condition). The end of a call always saves.

    Attributes:
      directory: the checkpoint directory (created if needed; must be empty or a checkpoint of
        the same sweep).
      every_segments: save after this many segments (default 1: every segment boundary).
      every_s: save when this many seconds passed since the last save.
      max_to_keep: complete checkpoints kept (the older ones are deleted after a save).
      metadata: free JSON data stored in the marker (the CLI keeps its arguments there).
    """

    directory: Path
    every_segments: int | None = 1
    every_s: float | None = None
    max_to_keep: int = 2
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.every_segments is not None and (
            isinstance(self.every_segments, bool) or not isinstance(self.every_segments, int)
            or self.every_segments < 1
        ):
            raise ValueError(
                f"every_segments must be a positive integer or None, got {self.every_segments!r}"
            )
        if self.every_s is not None and not (
            isinstance(self.every_s, int | float) and self.every_s >= 0
        ):
            raise ValueError(f"every_s must be a number >= 0 or None, got {self.every_s!r}")
        if self.every_segments is None and self.every_s is None:
            raise ValueError("give every_segments or every_s (or both): when should it save?")
        if not isinstance(self.max_to_keep, int) or self.max_to_keep < 1:
            raise ValueError(f"max_to_keep must be a positive integer, got {self.max_to_keep!r}")

    @classmethod
    def of(cls, checkpoint: str | os.PathLike[str] | Checkpointer) -> Checkpointer:
        """A :class:`Checkpointer` from a path (default policy) or itself."""
        if isinstance(checkpoint, Checkpointer):
            return checkpoint
        if isinstance(checkpoint, str | os.PathLike):
            return cls(Path(checkpoint))
        raise TypeError(
            f"checkpoint must be a directory path or a Checkpointer, got "
            f"{type(checkpoint).__name__}"
        )


class Store:
    """An open checkpoint directory: validated marker, Orbax manager, save policy state."""

    def __init__(self, checkpointer: Checkpointer, kind: str, arguments: Mapping[str, Any],
                 resume: bool) -> None:
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be True or False, got {resume!r}")
        if jax.process_count() > 1:
            # Every process would write the same directory; Orbax's multi-host protocol is not
            # wired in (yet).
            raise ValueError(
                f"checkpoint: checkpointing runs in one process, this sweep has "
                f"{jax.process_count()}; drop checkpoint= or run in one process"
            )
        self.checkpointer = checkpointer
        self.kind = kind
        self.arguments = to_json(_digest_arrays(arguments))
        self.fingerprint = fingerprint(arguments)
        directory = checkpointer.directory
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"checkpoint: {str(directory)!r} exists and is not a directory")
        # A marker's temporary file alone means a first run killed before it began: removed.
        storage.remove_temporaries(directory, [MARKER])
        existing = directory.is_dir() and any(directory.iterdir())
        if existing:
            marker = read_marker(directory)
            if not resume:
                raise ValueError(
                    f"checkpoint directory {str(directory)!r} already holds a checkpoint; pass "
                    "resume=True (CLI: --resume) to continue that sweep, or give an empty "
                    "directory"
                )
            self._check_same_sweep(marker)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            marker = {
                "format": FORMAT, "kind": kind, "fingerprint": self.fingerprint,
                "arguments": self.arguments, "metadata": to_json(dict(checkpointer.metadata)),
            }
            body = json.dumps(marker, sort_keys=True, indent=1).rstrip()[:-1].rstrip()
            storage.write_atomic(directory / MARKER,
                                 storage.sealing(lambda file: file.write(body)))
        self.metadata = marker.get("metadata", {})
        ocp = _orbax()
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            directory.resolve(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=checkpointer.max_to_keep, enable_async_checkpointing=False,
                create=True, cleanup_tmp_directories=True,  # left by a save that was killed
            ),
            item_names=("document", "arrays"),
        )
        self._segments_since_save = 0
        self._last_save_s = time.monotonic()

    def _check_same_sweep(self, marker: Mapping[str, Any]) -> None:
        where = str(self.checkpointer.directory)
        if marker["kind"] != self.kind:
            raise ValueError(
                f"checkpoint {where!r} was written by jaxtune.{marker['kind']}(), not "
                f"jaxtune.{self.kind}(); resume it with the same call"
            )
        if marker["fingerprint"] != self.fingerprint:
            saved = marker["arguments"] if isinstance(marker["arguments"], dict) else {}
            differ = sorted(
                name for name in set(saved) | set(self.arguments)
                if saved.get(name) != self.arguments.get(name)
            )
            raise ValueError(
                f"checkpoint {where!r} belongs to another sweep: its arguments differ in "
                f"{differ or ['(fingerprint)']}; resume with the arguments it was started with, "
                "or use a new checkpoint directory"
            )

    # ---- policy ----

    def segment_done(self) -> None:
        """Counts one segment run since the last save."""
        self._segments_since_save += 1

    def due(self) -> bool:
        """Whether the policy asks for a save now."""
        every_segments, every_s = self.checkpointer.every_segments, self.checkpointer.every_s
        if every_segments is not None and self._segments_since_save >= every_segments:
            return True
        return every_s is not None and time.monotonic() - self._last_save_s >= every_s

    # ---- save / load ----

    def save(self, document: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Writes one checkpoint step (atomically: Orbax renames a finished temporary folder)."""
        arrays = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
        # Orbax refuses empty trees and zero-size arrays: those are described in the document,
        # and the format tag as bytes is always there.
        empty = {name: [value.dtype.str, list(value.shape)]
                 for name, value in arrays.items() if value.size == 0}
        arrays = {name: value for name, value in arrays.items() if value.size}
        arrays["format"] = np.frombuffer(FORMAT.encode(), np.uint8).copy()
        full = storage.seal_document({
            "format": FORMAT, "fingerprint": self.fingerprint, **to_json(dict(document)),
            "checksums": {name: array_digest(value) for name, value in arrays.items()},
            "empty_arrays": empty,
        })
        latest = self._manager.latest_step()
        step = 0 if latest is None else latest + 1
        ocp = self._ocp
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    document=ocp.args.JsonSave(full), arrays=ocp.args.PyTreeSave(arrays)
                ),
            )
            self._manager.wait_until_finished()
        except BaseException as error:
            # A failed save (a full or read-only disk) leaves Orbax's temporary step folder.
            remove_unfinished_steps(self.checkpointer.directory)
            if not isinstance(error, OSError):
                raise
            directory = self.checkpointer.directory
            raise storage.WriteError(
                f"checkpoint: could not save step {step} into {str(directory)!r} "
                f"({error.strerror or error}); its last complete step is kept: make room, then "
                f"resume (jaxtune sweep --resume {directory}, or resume=True)"
            ) from error
        self._segments_since_save = 0
        self._last_save_s = time.monotonic()

    def latest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The newest complete checkpoint ``(document, arrays)``, or ``None`` before the first.

        Raises:
          ValueError: the newest checkpoint is damaged (unreadable, wrong format or fingerprint,
            an array whose checksum does not match).
        """
        self._manager.reload()
        step = self._manager.latest_step()
        if step is None:
            return None
        where = self.checkpointer.directory / str(step)
        ocp = self._ocp
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    document=ocp.args.JsonRestore(), arrays=ocp.args.PyTreeRestore()
                ),
            )
            document, arrays = restored.document, restored.arrays
        # Orbax and TensorStore report damaged files with many exception types (decode errors,
        # missing files, value errors); all of them mean "this checkpoint cannot be read".
        except (ValueError, TypeError, KeyError, OSError, RuntimeError, AttributeError) as error:
            raise ValueError(
                f"checkpoint {str(where)!r} is damaged and cannot be read ({type(error).__name__}:"
                f" {_first_line(error)}); delete that step folder to fall back to an older one, "
                "or start again in a new directory"
            ) from error
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"checkpoint {str(where)!r} is damaged: its document has no "
                             f"{FORMAT!r} format tag")
        try:
            document = storage.check_document(document, f"checkpoint {str(where / 'document')!r}")
        except storage.DamagedFileError as error:
            raise ValueError(f"{error}; delete that step folder to fall back to an older one, "
                             "or start again in a new directory") from error
        if document.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {str(where)!r} belongs to another sweep (fingerprint differs from "
                f"the directory's {MARKER}); use a new checkpoint directory"
            )
        arrays = {name: np.asarray(value) for name, value in dict(arrays or {}).items()}
        checksums = document.get("checksums", {})
        if set(checksums) != set(arrays) or any(
            array_digest(arrays[name]) != digest for name, digest in checksums.items()
        ):
            raise ValueError(
                f"checkpoint {str(where)!r} is damaged: its arrays do not match their checksums;"
                " delete that step folder to fall back to an older one, or start again"
            )
        for name, (dtype, shape) in dict(document.get("empty_arrays", {})).items():
            arrays[name] = np.zeros(shape, np.dtype(dtype))
        return from_json(document), arrays


def remove_unfinished_steps(directory: str | os.PathLike[str]) -> list[Path]:
    """Deletes the temporary step folders (``*.orbax-checkpoint-tmp*``) a failed or killed
    save left in a checkpoint directory; returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [path for path in directory.iterdir()
               if path.is_dir() and ".orbax-checkpoint-tmp" in path.name]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


# --------------------------------------------------------------------------------------------
# Learning curves as arrays, finished rounds


def pack_curves(records: Sequence[Mapping[str, Any]], prefix: str
                ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Moves the learning curves of member records into flat arrays.

    Curves are most of a sweep's host data (a value per metric per segment per member); as
    arrays they are saved and read at the speed of bytes, not of JSON numbers. Returns the
    records without ``curve_steps``/``curves`` (with ``curve_names``) and the arrays
    ``<prefix>.lengths``, ``<prefix>.steps`` and ``<prefix>.values.<name>`` (float64, exact for
    the float32 metrics and the Python floats they were read into).
    """
    names = sorted({name for record in records for name in record["curves"]})
    lengths = np.asarray([len(r["curve_steps"]) for r in records], np.int64)
    steps = np.fromiter((s for r in records for s in r["curve_steps"]), np.int64,
                        count=int(lengths.sum()))
    arrays = {f"{prefix}.lengths": lengths, f"{prefix}.steps": steps}
    for name in names:
        arrays[f"{prefix}.values.{name}"] = np.fromiter(
            (float(v) for r, n in zip(records, lengths, strict=True)
             for v in r["curves"].get(name, [math.nan] * n)),
            np.float64, count=int(lengths.sum()),
        )
    stripped = [
        {**{k: v for k, v in r.items() if k not in ("curve_steps", "curves")},
         "curve_names": sorted(r["curves"])}
        for r in records
    ]
    return stripped, arrays


def unpack_curves(records: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray],
                  prefix: str) -> list[dict[str, Any]]:
    """Inverse of :func:`pack_curves`."""
    lengths = arrays.get(f"{prefix}.lengths")
    if lengths is None or len(lengths) != len(records):
        raise ValueError(f"checkpoint is damaged: the curves of {prefix!r} are missing")
    ends = np.cumsum(lengths)
    steps = arrays[f"{prefix}.steps"].tolist()
    values = {
        key.rpartition(".values.")[2]: array.tolist()
        for key, array in arrays.items() if key.startswith(f"{prefix}.values.")
    }
    out = []
    for record, end, length in zip(records, ends.tolist(), lengths.tolist(), strict=True):
        start = end - length
        curves = {name: values[name][start:end] for name in record["curve_names"]}
        rest = {k: v for k, v in record.items() if k != "curve_names"}
        out.append({**rest, "curve_steps": steps[start:end], "curves": curves})
    return out


@dataclasses.dataclass(frozen=True)
class TrainScope:
    """Hands an open :class:`Store` to the train() call of one tune round.

    The engine's session (:mod:`jaxtune.engine.session`) saves the round's progress under
    ``scope`` next to ``outer``.

    Attributes:
      store: the tune call's store.
      outer: the tune section saved with every checkpoint of the round.
      scope: which round (a train section of another scope is not this call's).
      restore: whether to look for this round's saved progress.
      outer_arrays: arrays saved with ``outer`` (the finished rounds' learning curves).
    """

    store: Store
    outer: Mapping[str, Any]
    scope: Any
    restore: bool
    outer_arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


def pack_rounds(batches: Sequence[Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The tune section for finished rounds (``Results``): rows as JSON, curves as arrays."""
    rounds, arrays = [], {}
    for index, batch in enumerate(batches):
        document = batch.to_dict()
        rows, curves = pack_curves(document["rows"], f"rounds.{index}")
        rounds.append({**document, "rows": rows})
        arrays.update(curves)
    return {"tune": {"rounds": rounds}}, arrays


def unpack_rounds(document: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[Any]:
    """Inverse of :func:`pack_rounds`: the finished rounds' ``Results``.

    Raises:
      ValueError: the document has no tune section (it was not written by ``tune``) or a
        round is malformed.
    """
    section = document.get("tune")
    if not isinstance(section, dict) or not isinstance(section.get("rounds"), list):
        raise ValueError("checkpoint is damaged: no finished-rounds section for tune()")
    batches = []
    for index, saved in enumerate(section["rounds"]):
        rows = unpack_curves(saved["rows"], arrays, f"rounds.{index}")
        batches.append(Results.from_dict({**saved, "rows": rows},
                                         source=f"checkpoint round {index}"))
    return batches

