"""Host memory of a large population: 4096 members on the CPU do not grow memory per segment.

What must grow is the learning curves: every segment appends, for every member, one step and one
value per metric (Python ints and floats, about 32 bytes each with the list slot). Anything
else held per segment would show as growth beyond that: a leaked population state here is
``4096 * 195 * 4`` bytes (about 3 MiB) per segment, a leaked metrics copy 48 KiB.

Measured (``python -m pytest -s tests/test_memory.py``, 2 shared CPU cores, jax 0.10.2):
the resident set grows 0.56 to 0.74 MiB per segment after warm-up, of which tracemalloc
attributes 0.48 MiB to the curves (``MemberRecord.record``) and nothing else above 40 KiB. The
bound asserted is three times the curves' own size, 1.5 MiB per segment: room for the
allocator's slack, still half of one leaked population state.
"""

from __future__ import annotations

import os

import numpy as np

import jaxtune as jt

NUM_MEMBERS = 4096
NUM_FEATURES = 64
NUM_SEGMENTS = 50
WARM_UP = 10


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _split() -> jt.Split:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(NUM_FEATURES).astype(np.float32)

    def part(rows):
        x = rng.standard_normal((rows, NUM_FEATURES)).astype(np.float32)
        return x, (x @ weights).astype(np.float32)

    x_train, y_train = part(256)
    x_valid, y_valid = part(64)
    return jt.Split(x_train, y_train, x_valid, y_valid, x_valid[:0], y_valid[:0], "regression",
                    None, "synthetic")


def test_4096_members_do_not_grow_host_memory_per_segment():
    task = jt.regression_task("linear", input_shape=(NUM_FEATURES,))
    configs = [{"learning_rate": float(lr), "optimizer": "adam"}
               for lr in np.geomspace(1e-3, 1e-1, NUM_MEMBERS)]
    rss = []
    results = jt.train(
        task, configs, _split(), num_steps=2 * NUM_SEGMENTS, steps_per_segment=2, batch_size=16,
        evaluate_test=False, on_segment=lambda report: rss.append(_rss_bytes()),
    )
    assert len(rss) == NUM_SEGMENTS
    assert results.metadata["num_chunks"] == 1  # one population of 4096, not a loop of chunks
    assert all(row.status == "completed" for row in results)
    num_points = len(results.metric_names) + 1  # a value per metric and the step
    curves_bytes_per_segment = NUM_MEMBERS * num_points * 32
    after = np.asarray(rss[WARM_UP:], np.float64)
    slope = np.polyfit(np.arange(len(after)), after, 1)[0]
    print(f"RSS {rss[0] / 2**20:.1f} -> {rss[-1] / 2**20:.1f} MiB; after warm-up "
          f"{slope / 2**20:.3f} MiB per segment (curves: {curves_bytes_per_segment / 2**20:.3f})")
    assert slope < 3 * curves_bytes_per_segment, slope
    # Learning curves really have one point per segment for every member.
    assert all(len(row.curve_steps) == NUM_SEGMENTS for row in results)
