"""jaxtune: a whole population of training runs as one compiled JAX program."""

__version__ = "0.1.0"
