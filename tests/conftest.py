"""Shared test set-up. Tests run on the CPU with one device; multi-device tests use a subprocess."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests count compilations; a warm persistent cache would load programs instead of compiling
# them. tests/test_compile_cache.py turns it on in subprocesses of its own.
os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")
