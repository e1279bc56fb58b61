"""The commands behind ``jaxtune``: what :mod:`jaxtune.cli` dispatches to.

``jaxtune sweep`` runs in four steps: parse (:mod:`jaxtune.cli`, into the typed
:class:`~jaxtune.commands.request.SweepRequest` of :mod:`~jaxtune.commands.request`),
:mod:`~jaxtune.commands.check` (every error in the flags and files, before anything is
loaded), :mod:`~jaxtune.commands.build` (space, data, task, strategy and one
:class:`~jaxtune.engine.EngineOptions`) and :mod:`~jaxtune.commands.sweep` (train through a
driver, :mod:`~jaxtune.commands.drivers`, and write ``--out``). :mod:`~jaxtune.commands.saved`
holds the commands on a saved sweep (``show``, ``plot``, ``export-optuna``),
:mod:`~jaxtune.commands.resume` the ``--resume DIR`` argument rewrite,
:mod:`~jaxtune.commands.usertask` the import of a user's ``--task MODULE:ATTR``,
:mod:`~jaxtune.commands.devices` the split of the CPU into devices and
:mod:`~jaxtune.commands.flags` the commands' flags (all but those naming the strategy
registry, which :mod:`jaxtune.cli` keeps).

Nothing here imports :mod:`jaxtune.cli`: the imports point down, from the entry to the commands.
"""
