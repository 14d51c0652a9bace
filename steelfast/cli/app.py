"""The ``steelfast`` Typer app and the rule every command follows for errors.

In: a command function. Out: the same command registered on :data:`app`, with a domain error turned
into one line on stderr and exit code 1 (:func:`domain_errors`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Callable, TypeVar

import typer

from steelfast.inference.errors import BackendUnavailableError

__all__ = ["DOMAIN_ERRORS", "app", "domain_errors", "echo_warnings", "given_options", "quiet_info",
           "refuse_options", "reported_here", "version_option"]

app = typer.Typer(
    name="steelfast",
    help="Fast surface-defect segmentation for steel sheets (Severstal layout).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click output: a usage error is "Usage: ..." and one "Error: ..." line, as other CLIs print
    # it, not a box drawn by rich; help is plain text too.
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., object])


def _show_version(value: bool) -> None:
    if value:
        from steelfast._version import __version__

        typer.echo(f"steelfast {__version__}")
        raise typer.Exit()


def version_option() -> bool:
    """``--version``: print ``steelfast X.Y.Z`` and exit 0, before anything else is parsed or checked
    (for ``steelfast`` and for the programs ``steelfast-segment`` and ``steelfast-train``)."""
    return typer.Option(False, "--version", callback=_show_version, is_eager=True,
                        help="Show the version and exit.")


@app.callback()
def _root(version: bool = version_option()) -> None:
    """Fast surface-defect segmentation for steel sheets (Severstal layout)."""


#: What the library raises for bad input, bad paths, missing extras and unusable backends. A
#: ``TypeError`` or a plain ``RuntimeError`` is a bug and keeps its traceback (``typer.Exit``, a
#: ``RuntimeError`` too, passes through).
DOMAIN_ERRORS = (ValueError, OSError, ImportError, BackendUnavailableError)


def domain_errors(func: F) -> F:
    """Turn domain exceptions into a one-line error and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except DOMAIN_ERRORS as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def given_options(ctx: typer.Context, names: Sequence[str]) -> list[str]:
    """The flags of those parameters of the running command that were given (on the command line
    or in the environment), not left at their defaults: for refusing options another mode uses."""
    flags = {p.name: "/".join(p.opts + p.secondary_opts) for p in ctx.command.params}  # --tune/--no-tune
    given = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.append(flags[name])
    return given


def refuse_options(ctx: typer.Context, names: Sequence[str], owner: str, mode: str) -> None:
    """Raise ValueError when any of those parameters was given: they belong to ``owner`` (e.g.
    ``"--engine ray"``), not to the ``mode`` this run is in, and would be silently ignored."""
    given = given_options(ctx, names)
    if given:
        raise ValueError(f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of {owner}, "
                         f"not of {mode}")


@contextlib.contextmanager
def reported_here(*loggers: str) -> Iterator[None]:
    """Keep Python's last-resort handler from printing what these loggers warn of meanwhile: the
    command reports the same (failures, notes) itself, once. Handlers the host configured still get it."""
    quiet = logging.NullHandler()
    for name in loggers:
        logging.getLogger(name).addHandler(quiet)
    try:
        yield
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(quiet)


@contextlib.contextmanager
def quiet_info(logger: str, drop: Sequence[str] = ()) -> Iterator[None]:
    """While the block runs, keep the records below WARNING, and those whose message starts with one
    of ``drop``, off the terminal: from ``logger``'s stream handlers (stderr, stdout), which get its
    children's records too. For a command's ``--no-progress`` run; log files keep every record, and
    levels and handlers are left as they were."""
    prefixes = (drop,) if isinstance(drop, str) else tuple(drop)

    class Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno < logging.WARNING:
                return False
            try:
                return not record.getMessage().startswith(prefixes)
            except Exception:  # a malformed call: let the handler report it as logging does
                return True

    quiet = Quiet()
    # A logger's filters see only its own records; its handlers' filters see its children's too.
    handlers = [h for h in logging.getLogger(logger).handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@contextlib.contextmanager
def echo_warnings(logger: str) -> Iterator[None]:
    """Print the warnings ``logger`` logs meanwhile as ``note: ...`` lines on stderr."""

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            typer.echo(f"note: {record.getMessage()}", err=True)

    handler = Echo(logging.WARNING)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
