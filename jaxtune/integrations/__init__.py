"""Bridges to other tools: TensorBoard and Optuna (optional: ``pip install jaxtune[integrations]``).

* :func:`write_tensorboard` writes a sweep as TensorBoard event files: one run per member with its
  learning curves, final metrics and hyperparameters (the HParams tab).
* :func:`export_to_optuna` copies a sweep into an Optuna study (one trial per member), for
  ``optuna-dashboard`` or Optuna's visualizations.
* :func:`optuna_strategy` wraps any Optuna sampler (TPE, CMA-ES, ...) as a jaxtune
  :class:`~jaxtune.strategies.Strategy`, so Optuna proposes and jaxtune trains whole batches as
  one population.

Importing this package needs neither Optuna nor tensorboardX; calling a function that needs one
raises an ``ImportError`` that names ``pip install jaxtune[integrations]``.
"""

from __future__ import annotations

from jaxtune.integrations.optuna import OptunaState, export_to_optuna, optuna_strategy
from jaxtune.integrations.tensorboard import write_tensorboard

__all__ = ["OptunaState", "export_to_optuna", "optuna_strategy", "write_tensorboard"]
