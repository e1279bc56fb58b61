"""The commands behind ``jaxtune``: what :mod:`jaxtune.cli` dispatches to.

``jaxtune sweep`` runs in four steps, one module each: :mod:`~jaxtune.commands.request`
(the parsed command line as a typed :class:`~jaxtune.commands.request.SweepRequest`),
:mod:`~jaxtune.commands.check` (every error in the flags and files, before anything is
loaded), :mod:`~jaxtune.commands.build` (space, data, task, strategy and one
:class:`~jaxtune.engine.EngineOptions`) and :mod:`~jaxtune.commands.sweep` (train through a
driver, :mod:`~jaxtune.commands.drivers`, and write ``--out``). :mod:`~jaxtune.commands.saved`
holds the commands on a saved sweep (``show``, ``plot``, ``export-optuna``) and
:mod:`~jaxtune.commands.resume` the ``--resume DIR`` argument rewrite.

Nothing here imports :mod:`jaxtune.cli`: the imports point down, from the entry to the commands.
"""
