"""steelfast._compiled: a missing compiled core gives an error that says how to fix it.

Each case runs ``python -S`` in a fake layout: without ``site``, the editable install's import hook is absent and
sys.path is exactly the current folder, then $PYTHONPATH, then the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import steelfast

PACKAGE = Path(steelfast.__file__).resolve().parent


def _source_tree(root: Path) -> Path:
    """A checkout-like folder: steelfast/ with the real _compiled.py and no compiled core."""
    package = root / "steelfast"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_compiled.py").write_text((PACKAGE / "_compiled.py").read_text())
    (package / "_core.pyi").write_text("")  # the stub ships in the source tree; it is not a compiled core
    return root


def _installed(site: Path) -> Path:
    """An installed steelfast elsewhere: its folder holds a compiled core."""
    package = site / "steelfast"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / f"_core{EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    return package


def _import_from(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [sys.executable, "-S", "-c", "import steelfast._compiled"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_source_tree_shadowing_an_install_says_so(tmp_path):
    root = _source_tree(tmp_path.resolve() / "checkout")
    installed = _installed(tmp_path.resolve() / "site")
    result = _import_from(root, [installed.parent])
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: `import steelfast` found the source tree")
    assert f"{root / 'steelfast'}, which shadows the installed steelfast at {installed}" in message
    assert f"the folder {root} comes first on sys.path" in message
    assert "Run Python from another folder" in message and f"pip install -e {root}" in message
    assert "Reinstall" not in message


@pytest.mark.parametrize("layout", ["no install elsewhere", "install without a core"])
def test_missing_core_without_a_shadowed_install_says_reinstall(tmp_path, layout):
    root = _source_tree(tmp_path.resolve() / "checkout")
    pythonpath = []
    if layout == "install without a core":
        other = tmp_path.resolve() / "site" / "steelfast"
        other.mkdir(parents=True)
        (other / "__init__.py").write_text("")
        pythonpath.append(other.parent)
    result = _import_from(root, pythonpath)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "compiled core (steelfast._core) is missing or failed to load" in message
    assert "shadows" not in message
