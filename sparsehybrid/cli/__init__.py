"""The ``sparsehybrid`` command line; one module per group of commands."""

from . import bench, copying, indexing, quickstart, searching, serving, training, tuning  # noqa: F401  (registers the commands)
from .app import app

__all__ = ["app"]
