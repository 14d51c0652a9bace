"""The TensorRT backend: a serialized engine in, probabilities computed on the GPU out.

The engine comes from :func:`steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine`
(FP16; TensorRT 10 or 11) and runs with the TensorRT runtime on torch CUDA memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelfast._io import PathLike
from steelfast.inference.backends.base import Backend
from steelfast.inference.backends.tensorrt_engine import read_sidecar
from steelfast.inference.backends.tensorrt_plan import import_tensorrt
from steelfast.inference.errors import BackendUnavailableError
from steelfast.inference.onnx_file import INPUT_NAME, OUTPUT_NAME

__all__ = ["TensorRTBackend"]



class TensorRTBackend(Backend):
    """A TensorRT engine run with the TensorRT runtime on torch CUDA memory.

    The input and output dtypes are read from the engine by name into :attr:`io_dtypes` (float32
    input and float16 output for an engine built from a float16 ONNX model, float32 both for one
    built with TensorRT 10's FP16 flag). A version-compatible engine (its sidecar says so) is deserialized with
    ``engine_host_code_allowed``: it runs the lean runtime it carries.

    Args:
        engine_path: Serialized engine from
            :func:`~steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine`.
        metadata: The model's metadata (from the ONNX file the engine was built from).
        device: CUDA device index.

    Raises:
        ImportError: ``tensorrt`` is missing (the message says what to install).
        BackendUnavailableError: No CUDA device, or the engine cannot be deserialized (e.g. built
            by another TensorRT version); a ``RuntimeError``.
    """

    name = "tensorrt"
    device = "cuda"
    precision = "fp16"

    def __init__(self, engine_path: PathLike, metadata: Mapping[str, Any], *, device: int = 0) -> None:
        trt = import_tensorrt(builder=False)
        super().__init__(metadata)
        if not torch.cuda.is_available():
            raise BackendUnavailableError("the tensorrt backend needs a CUDA device; none is available")
        built = read_sidecar(engine_path)
        self.precision = str(built.get("precision", "fp16"))
        self._torch_device = torch.device("cuda", device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if built.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # our own cache: a trusted plan
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} could not deserialize {engine_path} (built by another TensorRT or for "
                "another GPU, or a version-compatible engine without its .json sidecar)"
            )
        self.context = self.engine.create_execution_context()
        self.io_dtypes = {
            self.engine.get_tensor_name(i): _torch_dtype(trt, self.engine.get_tensor_dtype(self.engine.get_tensor_name(i)))
            for i in range(self.engine.num_io_tensors)
        }
        self.preferred_batch_size = 8
        self._stream = torch.cuda.Stream(device=self._torch_device)

    def _run(self, x: np.ndarray) -> np.ndarray:
        with torch.cuda.stream(self._stream):
            inp = torch.from_numpy(x).pin_memory().to(self._torch_device, non_blocking=True)
            inp = inp.to(self.io_dtypes[INPUT_NAME]).contiguous()
            if not self.context.set_input_shape(INPUT_NAME, tuple(inp.shape)):
                raise ValueError(f"input shape {tuple(inp.shape)} is outside the engine's optimization profile")
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.io_dtypes[OUTPUT_NAME], device=self._torch_device)
            self.context.set_tensor_address(INPUT_NAME, inp.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the log above)")
            result = out.to(torch.float16 if out.dtype == torch.float16 else torch.float32).cpu()
        self._stream.synchronize()
        return result.numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise RuntimeError(f"unsupported TensorRT tensor dtype {dtype}")
    return table[dtype]
