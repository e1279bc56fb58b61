"""Compile once per machine, not once per process: JAX's persistent compilation cache.

Most of a small sweep's first run is compilation (the population's set-up, segment and
evaluation programs, the Gaussian-process programs of Bayesian optimization). JAX can keep
compiled programs on disk and load them in a later process instead of compiling again; jaxtune
turns this on by default the first time it trains or proposes, in a per-user folder:

- ``$JAXTUNE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jaxtune/xla``, else
  ``~/.cache/jaxtune/xla``;
- ``JAXTUNE_COMPILATION_CACHE=0`` (or ``off``, ``false``, ``no``) turns it off;
- a cache folder the caller already gave JAX (``jax.config.update("jax_compilation_cache_dir",
  ...)``, ``JAX_COMPILATION_CACHE_DIR``) is used as it is: jaxtune never overrides it;
- a folder that cannot be created or written (a read-only home) leaves the cache off; the sweep
  runs as without it (:func:`compilation_cache_status` says why).

Several processes may share the folder: entries are read and written under a file lock (JAX's
own, with the ``filelock`` package) and the folder is capped in size (least recently used
entries go first). A cache hit changes nothing in the results: the loaded program is the one a
compilation would have produced. ``Results.metadata["num_compilations"]`` counts the programs
actually compiled, so a warm run reports fewer.

The cache folder is trusted code: do not point it at a folder others may write.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENV_DIR",
    "ENV_SWITCH",
    "CacheStatus",
    "CompileCounter",
    "compilation_cache_status",
    "default_cache_directory",
    "enable_compilation_cache",
    "ensure_compilation_cache",
]

#: The environment variable naming the cache folder.
ENV_DIR = "JAXTUNE_CACHE_DIR"
#: The environment variable that turns the default cache off (``0``, ``off``, ``false``, ``no``).
ENV_SWITCH = "JAXTUNE_COMPILATION_CACHE"
#: The folder's size cap (least recently used entries are evicted beyond it).
DEFAULT_MAX_BYTES = 2 * 1024**3
_OFF_WORDS = ("0", "off", "false", "no")
#: JAX's event around every backend compilation request (recorded for cache hits too).
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
#: JAX's event when a program is loaded from the persistent cache.
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CacheStatus(NamedTuple):
    """Whether the persistent compilation cache is on, where, and why.

    Attributes:
      enabled: programs are loaded from and saved to ``directory``.
      directory: the cache folder, or ``None`` when off.
      reason: one line: who set it, or why it is off.
    """

    enabled: bool
    directory: str | None
    reason: str


def default_cache_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user cache folder (see the module docstring for the order of choices)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_DIR):
        return Path(environ[ENV_DIR]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path("~").expanduser() / ".cache")
    return Path(base) / "jaxtune" / "xla"


def compilation_cache_status() -> CacheStatus:
    """The cache's state in this process (read from JAX's configuration)."""
    directory = jax.config.jax_compilation_cache_dir
    if directory and jax.config.jax_enable_compilation_cache:
        return CacheStatus(True, str(directory), "jax_compilation_cache_dir is set")
    if directory:
        return CacheStatus(False, None, "jax_enable_compilation_cache is False")
    return CacheStatus(False, None, "no cache folder set")


def _writable_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold the cache, or ``None`` when it can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as error:
        return f"{directory} is not writable ({error.strerror or error})"
    return None


def enable_compilation_cache(
    directory: str | os.PathLike[str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> CacheStatus:
    """Turns the persistent compilation cache on, in ``directory`` (default: the per-user one).

    Also caches programs that compile fast (JAX's default skips those under a second, which
    is most of a small sweep's programs).

    Args:
      directory: the cache folder; created if missing.
      max_bytes: the folder's size cap.

    Returns:
      The new :class:`CacheStatus`.

    Raises:
      ValueError: ``directory`` cannot be created or written, or ``max_bytes`` is not positive.
      ImportError: the ``filelock`` package (needed to share the folder safely) is missing.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if importlib.util.find_spec("filelock") is None:
        raise ImportError(
            "the compilation cache needs the filelock package to share its folder between "
            "processes: pip install filelock"
        )
    path = default_cache_directory() if directory is None else Path(directory).expanduser()
    problem = _writable_problem(path)
    if problem is not None:
        raise ValueError(
            f"compilation cache: {problem}; pass another folder, set {ENV_DIR}, or turn the "
            f"cache off with {ENV_SWITCH}=0"
        )
    if jax.config.jax_compilation_cache_dir and jax.config.jax_compilation_cache_dir != str(path):
        jax_cache.reset_cache()  # JAX opens its cache once; a new folder needs a fresh start
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_dir", str(path))
    return CacheStatus(True, str(path), "enabled by jaxtune")


def ensure_compilation_cache(environ: Mapping[str, str] | None = None) -> CacheStatus:
    """Turns the default cache on unless it is set already, turned off, or cannot work.

    Called by the engine before it compiles and by Bayesian optimization before it proposes;
    never raises: a cache that cannot work leaves compilation as it is.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      The :class:`CacheStatus` after the call.
    """
    environ = os.environ if environ is None else environ
    current = compilation_cache_status()
    if current.enabled or jax.config.jax_compilation_cache_dir:
        return current
    if environ.get(ENV_SWITCH, "").strip().lower() in _OFF_WORDS:
        return CacheStatus(False, None, f"turned off by {ENV_SWITCH}")
    try:
        return enable_compilation_cache(default_cache_directory(environ))
    except (ValueError, ImportError) as error:
        return CacheStatus(False, None, str(error))


class CompileCounter:
    """Counts the programs XLA compiles while active, by function, and the cache hits.

    JAX records :data:`COMPILE_EVENT` around every request for a compiled program, including
    one the persistent cache answers (it then records :data:`CACHE_HIT_EVENT` first, in the
    same thread). ``count`` is what was really compiled; ``cache_hits`` what was loaded.

    Use as a context manager: ``with CompileCounter() as counter: ...``.
    """

    def __init__(self) -> None:
        self.count = 0
        self.cache_hits = 0
        self.by_function: dict[str, int] = {}
        self._pending = threading.local()  # a hit seen, its compile event not yet
        self._lock = threading.Lock()  # compiles finish in several threads (engine.precompile)

    def _on_event(self, event: str, **kwargs: Any) -> None:
        if event == CACHE_HIT_EVENT:
            self._pending.hits = getattr(self._pending, "hits", 0) + 1

    def _on_duration(self, event: str, duration_s: float, **kwargs: Any) -> None:
        del duration_s
        if event != COMPILE_EVENT:
            return
        name = str(kwargs.get("fun_name", "?"))
        hit = getattr(self._pending, "hits", 0) > 0
        if hit:
            self._pending.hits -= 1
        with self._lock:
            if hit:
                self.cache_hits += 1
            else:
                self.count += 1
                self.by_function[name] = self.by_function.get(name, 0) + 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_listener(self._on_event)
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_listener(self._on_event)
