"""``python -m steelfast`` runs the ``steelfast`` CLI."""

from steelfast.cli import main

__all__: list[str] = []

main()
