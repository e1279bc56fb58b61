"""Shared test set-up. Tests run on the CPU with one device; multi-device tests use a subprocess."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
