"""jaxtune.storage: sealed (checksummed) files, atomic writes, writable checks, folder locks."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from jaxtune import storage
from jaxtune.results import MemberResult, Results


def results(num_rows: int = 6) -> Results:
    rows = [
        MemberResult(
            member_id=i, config={"learning_rate": 1e-4 * 3**i, "optimizer": "adam", "width": 8},
            seed=0, fold=None, static_group="optimizer=adam", status="completed",
            diverged_step=None, metrics={"valid_loss": 0.5 / (i + 1), "valid_accuracy": 0.9},
            curve_steps=[10, 20], curves={"valid_loss": [1.0, 0.5 / (i + 1)],
                                          "valid_accuracy": [0.5, 0.9]},
            wall_time_s=0.25,
        )
        for i in range(num_rows)
    ]
    return Results(rows, {"metric": "valid_loss", "mode": "min", "seed": 0})


def test_random_bit_flips_in_results_json_never_load_silently(tmp_path):
    """30 seeded bit flips anywhere in results.json: every one is refused, naming the file
    (without the checksum, 5 of these 30 loaded silently)."""
    results().save(tmp_path)
    path = tmp_path / "results.json"
    original = path.read_bytes()
    rng = random.Random(11)
    for _ in range(30):
        flipped = bytearray(original)
        position = rng.randrange(len(flipped))
        flipped[position] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=r"results\.json") as error:
            Results.load(tmp_path)
        assert "\n" not in str(error.value), position
    path.write_bytes(original)
    assert Results.load(tmp_path) == results()


def test_an_edited_metric_or_status_is_refused(tmp_path):
    results().save(tmp_path)
    path = tmp_path / "results.json"
    text = path.read_text()
    for old, new in (('"valid_accuracy": 0.9}', '"valid_accuracy": 0.99}'),
                     ('"status": "completed"', '"status": "diverged"')):
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=r"results\.json is damaged: its content does not"):
            Results.load(tmp_path)


def test_results_json_stays_plain_json_for_people_and_older_readers(tmp_path):
    """The checksum is one more top-level key: the file is plain JSON with one row per line,
    and a file without it (written by an older jaxtune) still loads."""
    results().save(tmp_path)
    text = (tmp_path / "results.json").read_text()
    document = json.loads(text)
    assert set(document) == {"format", "metadata", "rows", "checksum"}
    assert document["checksum"].startswith("sha256:")
    assert len(text.splitlines()) == 2 + 1 + len(results()) + 2
    del document["checksum"]
    (tmp_path / "results.json").write_text(json.dumps(document))
    assert Results.load(tmp_path) == results()


def test_files_are_written_0644_and_temporaries_are_recognized(tmp_path):
    results().save(tmp_path)
    for name in ("results.json", "results.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == storage.FILE_MODE
    stale = tmp_path / ".results.json.abc123.tmp"
    stale.write_text("{")
    assert storage.is_temporary(stale, "results.json")
    assert not storage.is_temporary(tmp_path / "results.json", "results.json")
    assert storage.remove_temporaries(tmp_path, ["results.json"]) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]


def test_sealed_documents(tmp_path):
    document = storage.seal_document({"a": 1, "b": [0.5, "x"]})
    assert storage.check_document(document, "doc") == {"a": 1, "b": [0.5, "x"]}
    with pytest.raises(storage.DamagedFileError, match="doc is damaged: its content"):
        storage.check_document({**document, "a": 2}, "doc")
    with pytest.raises(storage.DamagedFileError, match="doc is damaged: its checksum is missing"):
        storage.check_document({"a": 1}, "doc")
    path = tmp_path / "x.json"
    storage.write_atomic(path, storage.sealing(lambda file: file.write('{"a": 1')))
    assert storage.read_sealed(path) == ({"a": 1}, True)
    path.write_text('{"a": 1}')
    assert storage.read_sealed(path, required=False) == ({"a": 1}, False)
    with pytest.raises(storage.DamagedFileError, match="checksum is missing"):
        storage.read_sealed(path)


def test_check_writable(tmp_path):
    assert storage.check_writable(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # nothing created (the probe file is gone)
    (tmp_path / "a" / "b").mkdir(parents=True)
    storage.check_writable(tmp_path / "a" / "b", "--out")
    with pytest.raises(ValueError, match="--out: the path is empty"):
        storage.check_writable("", "--out")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        storage.check_writable(tmp_path / "file", "--out")
    with pytest.raises(ValueError, match=r"lies under .* which is a file"):
        storage.check_writable(tmp_path / "file" / "x", "--out")
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


def test_a_second_process_cannot_save_into_a_locked_folder(tmp_path):
    """Two writers of one folder: while one holds the lock, the other's save is refused, so a
    folder's results.json and results.csv are always of one save."""
    script = (
        "import sys, time\n"
        "from jaxtune import storage\n"
        "with storage.FolderLock(sys.argv[1], 'Results.save'):\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(storage.FolderBusyError, match="being written by another"):
            results().save(tmp_path)
        assert not (tmp_path / "results.json").exists()
    finally:
        holder.communicate(b"\n", timeout=60)
    results().save(tmp_path)  # the lock ended with its holder
    assert Results.load(tmp_path) == results()
