"""Whether torch is tracing, scripting, compiling or exporting the model being run.

The networks' input checks (:mod:`steelfast.models`, :mod:`steelfast.efficientnet`) skip
themselves then: a Python shape check would be baked into the graph or break it.
"""

from __future__ import annotations

import torch

__all__ = ["is_tracing"]


def is_tracing() -> bool:
    """True while traced, scripted, compiled or exported (the shape check must not run then)."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )
