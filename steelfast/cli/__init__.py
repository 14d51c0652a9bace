"""Command-line interface: ``steelfast`` (sub-commands), ``steelfast-segment`` and ``steelfast-train``.

In: command-line arguments. Out: files written by the library, one-line messages, an exit code.

The CLI only parses arguments, calls the library and prints. A domain error (a ``ValueError``
for a bad value, an ``OSError`` for a bad path, an ``ImportError`` for a missing extra, or
:class:`~steelfast.inference.errors.BackendUnavailableError`) becomes a one-line message on stderr
and exit code 1, never a traceback; anything else is a bug and keeps its traceback. Ctrl-C ends a
command with one line that says how to continue, and exit code 130.

The commands live in :mod:`~steelfast.cli.data` (synth, eda, overlay), :mod:`~steelfast.cli.model`
(train, evaluate) and :mod:`~steelfast.cli.inference` (export, segment), all on the one Typer
:data:`~steelfast.cli.app.app`; importing them here registers them, and ``steelfast --help`` lists
them in the order they register.
"""

from __future__ import annotations

from typing import Callable

import typer

# Registration order is the order of `steelfast --help`: data (synth, eda, overlay), then inference
# (export, segment), then model (train, evaluate) commands.
import steelfast.cli.data  # noqa: F401 - registers synth, eda, overlay
from steelfast.cli.app import app
from steelfast.cli.inference import export, segment
from steelfast.cli.model import evaluate_cmd, train  # noqa: I001

__all__ = ["app", "evaluate_cmd", "export", "main", "segment", "segment_main", "train", "train_main"]


def main() -> None:
    """Entry point of ``steelfast``."""
    app()


def _single(command: Callable[..., None]) -> None:
    """Run one command as a program of its own, with the app's settings (plain click errors)."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command()(command)
    single()


def segment_main() -> None:
    """Entry point of ``steelfast-segment`` (the same as ``steelfast segment``)."""
    _single(segment)


def train_main() -> None:
    """Entry point of ``steelfast-train`` (the same as ``steelfast train``)."""
    _single(train)
