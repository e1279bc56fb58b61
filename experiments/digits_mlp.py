"""MLP with dropout on digits (or MNIST from local files): random search over learning rate,
batch size, dropout, weight decay and width, every config scored by 5-fold cross-validation.

The test rows (20%) never enter a fold; the cross-validated rows are the other 80%. Each config
is trained once per fold (all configs x folds of one static group, i.e. one (batch size, width)
pair, are one compiled population); the config with the best mean validation accuracy over the
folds is retrained on all cross-validated rows and scored once on the test rows. Also reported:
the one-standard-error choice, and the mean test accuracy of the five fold models.

    python experiments/digits_mlp.py                      # digits, default budget (minutes)
    python experiments/digits_mlp.py --smoke              # tiny budget
    python experiments/digits_mlp.py --mnist ~/data/mnist --max-train-rows 10000

``--mnist PATH``: a directory with the standard IDX files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
optionally ``.gz``), or an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.
MNIST's own test set is the test rows; its training set is cross-validated.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped): magic ``0 0 type ndim``, big-endian dims, data.

    Raises:
      ValueError: a file that is not IDX, or whose size does not match its header.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r}).")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * ndim], ">u4"))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    data = np.frombuffer(raw[4 + 4 * ndim :], dtype)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says shape {dims} but the file holds {data.size} values.")
    return data.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_mnist(path: str | Path) -> dict[str, np.ndarray]:
    """MNIST (or any IDX/npz dataset laid out the same way) from local files.

    Args:
      path: a directory holding the four IDX files of :data:`MNIST_FILES` (optionally ``.gz``),
        or an ``.npz`` file with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Returns:
      ``{"x_train", "y_train", "x_test", "y_test"}``: images flattened to float32 in [0, 1]
      (``[rows, height * width]``), labels int32.

    Raises:
      FileNotFoundError: the path, or one of the expected files, is missing (the message lists
        the files expected).
      ValueError: mismatched rows between images and labels.
    """
    path = Path(path).expanduser()
    expected = ", ".join(f"{v}[.gz]" for v in MNIST_FILES.values())
    if path.is_file() and path.suffix == ".npz":
        with np.load(path) as archive:
            missing = [k for k in MNIST_FILES if k not in archive]
            if missing:
                raise FileNotFoundError(
                    f"{path} lacks arrays {missing}; an .npz needs x_train, y_train, x_test, "
                    "y_test.")
            arrays = {k: np.asarray(archive[k]) for k in MNIST_FILES}
    elif path.is_dir():
        found = {k: _find(path, stem) for k, stem in MNIST_FILES.items()}
        missing = [MNIST_FILES[k] for k, f in found.items() if f is None]
        if missing:
            raise FileNotFoundError(
                f"{path} lacks {', '.join(missing)}; --mnist expects a directory with the IDX "
                f"files {expected}, or an .npz with x_train, y_train, x_test, y_test.")
        arrays = {k: read_idx(f) for k, f in found.items()}
    else:
        raise FileNotFoundError(
            f"--mnist {path}: no such directory or .npz file; give a directory with {expected}, "
            "or an .npz with x_train, y_train, x_test, y_test.")
    out = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x_{part} has {x.shape[0]} rows but y_{part} has {y.shape[0]}.")
        x = x.reshape(x.shape[0], -1).astype(np.float32)
        if x.size and x.max() > 1.0:
            x = x / 255.0
        out[f"x_{part}"] = x
        out[f"y_{part}"] = y.reshape(-1).astype(np.int32)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--num-configs", type=int, default=24)
    p.add_argument("--num-steps", type=int, default=600)
    p.add_argument("--num-folds", type=int, default=5)
    p.add_argument("--mnist", type=Path, default=None,
                   help="directory of MNIST IDX files or an .npz (see the module docstring)")
    p.add_argument("--max-train-rows", type=int, default=0,
                   help="with --mnist: cross-validate only this many training rows (0: all)")
    args = p.parse_args(argv)
    import jaxtune as jt
    from jaxtune import cv

    timer = _common.Timer()
    if args.mnist is not None:
        try:
            arrays = load_mnist(args.mnist)
        except (FileNotFoundError, ValueError) as error:
            p.error(str(error))
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        if args.max_train_rows:
            keep = np.random.default_rng(args.seed).permutation(len(y_train))[
                : args.max_train_rows]
            x_train, y_train = x_train[np.sort(keep)], y_train[np.sort(keep)]
        num_classes = int(max(y_train.max(), arrays["y_test"].max())) + 1
        split = jt.Split(x_train, y_train, x_train[:0], y_train[:0], arrays["x_test"],
                         arrays["y_test"], "classification", num_classes, "mnist")
        data_name = f"MNIST from `{args.mnist.name}`"
    else:
        split = jt.train_valid_test_split(jt.load_dataset("digits"), 0.0, 0.2, seed=args.seed)
        num_classes = 10
        data_name = "digits (embedded, 1797 8x8 images)"
    num_features = split.x_train.shape[1]
    num_cv_rows = len(split.y_train)
    smoke = args.smoke
    num_configs = 3 if smoke else args.num_configs
    num_steps = 30 if smoke else args.num_steps
    num_folds = 2 if smoke else args.num_folds
    steps_per_segment = num_steps // 2 if smoke else max(num_steps // 20, 1)
    batch_sizes = [32] if smoke else [32, 64, 128]
    widths = [16] if smoke else [32, 64, 128]
    batch_sizes = [b for b in batch_sizes if b <= num_cv_rows // 2] or [max(num_cv_rows // 4, 1)]
    space = jt.Space({
        # The smoke run's 30 steps learn nothing below ~1e-3: its 3 draws must not land there.
        "learning_rate": jt.Float(3e-3 if smoke else 1e-4, 3e-2, log=True),
        "weight_decay": jt.Float(1e-6, 1e-2, log=True),
        "dropout": jt.Float(0.0, 0.5),
        "batch_size": jt.Choice(batch_sizes),
        "width": jt.Choice(widths),
        "depth": jt.Fixed(1 if smoke else 2),
        "optimizer": jt.Fixed("adamw"),
    })
    strategy = jt.random_search()
    import jax

    configs, _ = strategy.ask(strategy.init(space, jax.random.PRNGKey(args.seed)), num_configs)
    task = jt.classification_task("mlp", num_classes=num_classes, input_shape=(num_features,))
    results = cv.cross_validate(
        task, split, configs, num_steps=num_steps, num_folds=num_folds, seed=args.seed,
        space=space, steps_per_segment=steps_per_segment)
    groups = results.aggregate("valid_accuracy", "max")
    best = cv.best_config(results, rule="best_mean")
    one_se = cv.best_config(results, rule="one_standard_error")
    fold_test = float(np.mean([r.metrics["test_accuracy"] for r in results
                               if r.member_id in best["members"]]))

    # Refit the chosen config on every cross-validated row; score it once on the test rows
    # (recorded as the "validation" set of this run only to get its test curve).
    refit_split = split._replace(x_valid=split.x_test, y_valid=split.y_test)
    refit = jt.train(task, [best["config"]], refit_split, num_steps=num_steps,
                     steps_per_segment=steps_per_segment, seed=args.seed,
                     standardize=True, static_names=space.static_names, evaluate_test=False)
    refit_test = refit[0].metrics["valid_accuracy"]

    names = ["learning_rate", "weight_decay", "dropout", "batch_size", "width"]
    show = min(10, len(groups))
    rows = []
    for rank, g in enumerate(groups[:show], start=1):
        mark = []
        if g["members"] == best["members"]:
            mark.append("best mean")
        if g["members"] == one_se["members"]:
            mark.append("1-SE")
        test = float(np.mean([r.metrics["test_accuracy"] for r in results
                              if r.member_id in g["members"]]))
        rows.append([rank, *(g["config"][n] for n in names), g["mean"], g["sem"], test,
                     ", ".join(mark)])
    table = _common.markdown_table(
        ["rank", *names, f"{num_folds}-fold CV accuracy", "sem", "test acc. (fold models)",
         "chosen by"], rows)
    summary = _common.markdown_table(
        ["", "value"],
        [["configs x folds (members)", f"{num_configs} x {num_folds} ({len(results)})"],
         ["static groups (compiled populations)", results.metadata["num_static_groups"]],
         ["best CV accuracy (mean over folds)", best["mean"]],
         ["its test accuracy, refit on all CV rows", refit_test],
         ["its test accuracy, mean of the fold models", fold_test],
         ["one-SE choice: CV accuracy", one_se["mean"]]])
    sections = [
        f"Data: {data_name}; {num_cv_rows} rows cross-validated ({num_folds} stratified folds, "
        f"per-fold standardization), {len(split.y_test)} test rows never in a fold. Random "
        f"search over {num_configs} configs: learning rate log-uniform in [1e-4, 3e-2], weight "
        f"decay log-uniform in [1e-6, 1e-2], dropout in [0, 0.5], batch size in {batch_sizes}, "
        f"width in {widths} ({1 if smoke else 2} hidden layer{'' if smoke else 's'}), "
        f"AdamW, {num_steps} steps.",
        summary, f"The {show} best configs by mean CV accuracy:", table,
    ]

    import matplotlib.pyplot as plt

    figure, (ax_curve, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5))
    for rank, g in enumerate(groups[: min(5, len(groups))], start=1):
        member_rows = [r for r in results if r.member_id in g["members"]]
        steps = member_rows[0].curve_steps
        curve = np.mean([r.curves["valid_accuracy"] for r in member_rows], axis=0)
        ax_curve.plot(steps, curve, lw=2.5 if rank == 1 else 1.2,
                      label=f"#{rank}: lr {g['config']['learning_rate']:.2g}, "
                            f"bs {g['config']['batch_size']}, w {g['config']['width']}")
    ax_curve.plot(refit[0].curve_steps, refit[0].curves["valid_accuracy"], "k--",
                  label="#1 refit on all CV rows: test accuracy")
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("accuracy (CV: mean over folds)")
    ax_curve.set_ylim(max(0.0, min(0.8, best["mean"] - 0.2)), 1.0)
    ax_curve.legend(fontsize=7)
    ax_curve.set_title("learning curves of the 5 best configs")
    lrs = [g["config"]["learning_rate"] for g in groups]
    means = [g["mean"] for g in groups]
    sizes = [20 + g["config"]["width"] / 2 for g in groups]
    scatter = ax_lr.scatter(lrs, means, s=sizes, c=[g["config"]["dropout"] for g in groups],
                            cmap="viridis")
    figure.colorbar(scatter, ax=ax_lr, label="dropout")
    ax_lr.set_xscale("log")
    ax_lr.set_xlabel("learning rate (marker size: width)")
    ax_lr.set_ylabel(f"{num_folds}-fold CV accuracy")
    ax_lr.set_title("every config")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    _common.save_figure(figure, args.out, "digits_mlp")
    path = _common.write_report(
        args.out, "digits_mlp", "MLP with dropout: random search scored by cross-validation",
        _common.command_line("digits_mlp.py", argv_list), sections, timer.seconds)
    print(summary)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.png')} ({timer.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    _common.setup_jax()
    sys.exit(main())
