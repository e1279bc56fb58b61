"""Shared test set-up. Tests run on the CPU with one device; multi-device tests use a subprocess."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests count compilations; a warm persistent cache would load programs instead of compiling
# them. tests/test_compile_cache.py turns it on in subprocesses of its own.
os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")
# Most of the suite's time is XLA:CPU compiling small programs; LLVM's lowest optimization
# level compiles them several times faster (the suite runs about a quarter faster). Every
# comparison in the tests is between programs compiled with the same flags (a member and its
# solo run, two layouts, a hand-written loop), so no claim depends on the level.
# Subprocesses that set XLA_FLAGS themselves use the default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()
