"""The ONNX Runtime backend: an exported ``.onnx`` file in, probabilities from an ONNX Runtime session out.

It runs a file from :func:`steelfast.inference.export.export_onnx` (float32, or float16 with
float16 probabilities) on the CPU provider unless told otherwise; the model's metadata comes from
the file itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steelfast._io import PathLike
from steelfast.inference.backends.base import Backend
from steelfast.inference.onnx_file import INPUT_NAME, OUTPUT_NAME, read_onnx_metadata
from steelfast.inference.onnx_fp16 import onnx_precision
from steelfast.model_files import file_sha256

__all__ = ["OnnxRuntimeBackend"]



class OnnxRuntimeBackend(Backend):
    """ONNX Runtime (CPU provider) on an exported ONNX file.

    Args:
        onnx_path: File written by :func:`steelfast.inference.export.export_onnx`.
        threads: Intra-op threads (default: ONNX Runtime's, one per core).
        providers: Execution providers (default ``["CPUExecutionProvider"]``).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: PathLike, *, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        super().__init__(read_onnx_metadata(onnx_path))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.onnx_path = Path(onnx_path)
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.precision = onnx_precision(self.onnx_path)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def _run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})
        return out

    def weights_sha256(self) -> str | None:
        """The checkpoint's hash from the embedded metadata, else the ONNX file's."""
        known = super().weights_sha256()
        return known if known is not None or not self.onnx_path.is_file() else file_sha256(self.onnx_path)
