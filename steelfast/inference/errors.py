"""Errors of the inference stage that the command line reports as one line.

Bad values raise ``ValueError`` and bad paths ``OSError`` as everywhere in steelfast; these three
name the cases in between, each a subclass of the built-in error a caller would already catch.
"""

from __future__ import annotations

__all__ = ["BackendUnavailableError", "OutputBusyError", "ResumeMismatchError"]


class BackendUnavailableError(RuntimeError):
    """The chosen backend cannot run on this machine (no CUDA device, an engine of another TensorRT)."""


class OutputBusyError(OSError):
    """Another live run holds the lock on the same output file."""


class ResumeMismatchError(ValueError):
    """A resume was asked for with another model or other result-changing options than the run it continues."""
