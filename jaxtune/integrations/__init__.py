"""Bridges to other tools: TensorBoard, MLflow and Optuna (optional: ``pip install
jaxtune[integrations]``; MLflow: ``pip install jaxtune[mlflow]``).

* :func:`write_tensorboard` writes a sweep as TensorBoard event files: one run per member with its
  learning curves, final metrics and hyperparameters (the HParams tab).
* :class:`TensorBoardLogger` writes the same event files *while* the sweep runs (an
  ``on_segment`` callback that flushes after every segment).
* :class:`MLflowLogger` logs one MLflow run per member while the sweep runs (params,
  per-segment metrics at the training step, status); :func:`log_results_to_mlflow` afterwards.
* :func:`export_to_optuna` copies a sweep into an Optuna study (one trial per member), for
  ``optuna-dashboard`` or Optuna's visualizations.
* :func:`optuna_strategy` wraps any Optuna sampler (TPE, CMA-ES, ...) as a jaxtune
  :class:`~jaxtune.strategies.Strategy`, so Optuna proposes and jaxtune trains whole batches as
  one population.

Importing this package needs neither Optuna, tensorboardX nor MLflow; calling a function that
needs one raises an ``ImportError`` that names the install command.
"""

from __future__ import annotations

from jaxtune.integrations.mlflow import MLflowLogger, log_results_to_mlflow
from jaxtune.integrations.optuna import OptunaState, export_to_optuna, optuna_strategy
from jaxtune.integrations.tensorboard import TensorBoardLogger, write_tensorboard

__all__ = ["MLflowLogger", "OptunaState", "TensorBoardLogger", "export_to_optuna",
           "log_results_to_mlflow", "optuna_strategy", "write_tensorboard"]
