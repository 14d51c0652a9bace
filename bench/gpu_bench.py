"""GPU inference speed: torch CUDA fp16, ONNX Runtime CUDA (float32 and float16 ONNX) and TensorRT.

A standalone script for a CUDA machine (no pytest): prints one JSON object with images/s per
backend and batch size at 256x1600, the GPU name, and each backend's largest probability
difference and share of flipped mask pixels (threshold 0.5) against float32 eager PyTorch on the
same GPU. The batches are synthetic steel images (:func:`steelfast.data.synth.synth_image`), normalized
as the model's metadata says.

Backends, each skipped with a message in the JSON where it cannot run:

* ``torch-cuda-fp16-channels_last``: :class:`steelfast.inference.backends.torch_backend.TorchBackend` on CUDA;
* ``onnxruntime-cuda-fp32`` / ``onnxruntime-cuda-fp16``: the float32 ONNX file and its float16
  copy (:func:`steelfast.inference.onnx_fp16.to_fp16_onnx`) with ONNX Runtime's CUDAExecutionProvider
  (needs onnxruntime-gpu);
* ``tensorrt-fp16``: the engine of :func:`steelfast.inference.backends.tensorrt_engine.build_tensorrt_engine`
  (TensorRT 10: float32 ONNX with the FP16 flag; 11: the float16 ONNX, strongly typed).

Two figures per backend and batch size:

* ``images_per_s``: :meth:`Backend.predict_proba` from a NumPy batch to NumPy probabilities,
  host-device copies included (what the folder pipeline gets);
* ``compute_images_per_s`` (torch only): the forward pass on a batch already on the GPU.

Usage: ``python bench/gpu_bench.py [--checkpoint CKPT] [--batch-sizes 1 8 32] [--seconds 3]
[--hardware-compatibility none] [--version-compatible] [--out result.json]``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from steelfast.checkpoint import default_metadata, load_checkpoint
from steelfast.data.synth import synth_image
from steelfast.images import to_model_input
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.model_files import default_checkpoint_path
from steelfast.models import UNet


def _rate(fn, n_images: int, seconds: float, sync) -> float:
    fn()
    fn()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        count += 1
    sync()
    return count * n_images / (time.perf_counter() - start)


def _accuracy(got: np.ndarray, want: np.ndarray) -> dict:
    got = got.astype(np.float32)
    return {
        "max_abs_diff_vs_fp32": float(np.abs(got - want).max()),
        "flipped_fraction_vs_fp32": float(((got > 0.5) != (want > 0.5)).mean()),
    }


def _time_backend(report: dict, label: str, backend, batches: dict, seconds: float) -> None:
    for n, (x, want) in batches.items():
        got = backend.predict_proba(x)
        entry = {"backend": label, "batch": n,
                 "images_per_s": round(_rate(lambda: backend.predict_proba(x), n, seconds, torch.cuda.synchronize), 1),
                 **_accuracy(got, want)}
        report["results"].append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)


def _onnxruntime(report: dict, onnx_paths: dict, batches: dict, seconds: float) -> None:
    try:
        import onnxruntime as ort

        from steelfast.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    except ImportError as exc:
        report["onnxruntime"] = f"not available ({exc})"
        return
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        report["onnxruntime"] = (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                                 f"(providers: {ort.get_available_providers()}); install onnxruntime-gpu")
        return
    report["onnxruntime"] = ort.__version__
    for precision, path in onnx_paths.items():
        backend = OnnxRuntimeBackend(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if backend.device != "cuda":
            report[f"onnxruntime-{precision}"] = f"fell back to {backend.session.get_providers()}"
            continue
        _time_backend(report, f"onnxruntime-cuda-{precision}", backend, batches, seconds)


def _tensorrt(report: dict, onnx_path: Path, batches: dict, args: argparse.Namespace) -> None:
    from steelfast.inference.backends.tensorrt_plan import import_tensorrt

    try:
        trt = import_tensorrt(builder=True)
    except ImportError as exc:
        report["tensorrt"] = f"not available: {exc}"
        return
    from steelfast.inference.backends.tensorrt_backend import TensorRTBackend
    from steelfast.inference.backends.tensorrt_engine import build_tensorrt_engine, read_sidecar
    from steelfast.inference.errors import BackendUnavailableError
    from steelfast.inference.onnx_file import read_onnx_metadata

    report["tensorrt"] = trt.__version__
    start = time.perf_counter()
    try:
        engine = build_tensorrt_engine(onnx_path, batch=(1, 8, max(batches)),
                                       hardware_compatibility=args.hardware_compatibility,
                                       version_compatible=args.version_compatible)
    except (ImportError, ValueError, BackendUnavailableError) as exc:
        report["tensorrt_error"] = f"{type(exc).__name__}: {exc}"
        return
    report["tensorrt_build_s"] = round(time.perf_counter() - start, 1)
    report["tensorrt_engine"] = read_sidecar(engine)
    backend = TensorRTBackend(engine, read_onnx_metadata(onnx_path))
    report["tensorrt_io_dtypes"] = {name: str(dtype) for name, dtype in backend.io_dtypes.items()}
    _time_backend(report, "tensorrt-fp16", backend, batches, args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="Checkpoint (default: shipped model, else random UNet()).")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="Batch sizes to time.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Timing window per measurement.")
    parser.add_argument("--hardware-compatibility", default="none",
                        help="TensorRT engine: none, ampere_plus or same_compute_capability.")
    parser.add_argument("--version-compatible", action="store_true", help="TensorRT engine: version-compatible.")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 1
    path = args.checkpoint or default_checkpoint_path()
    if path.is_file():
        model, meta = load_checkpoint(path)
        source = str(path)
    else:
        torch.manual_seed(0)
        model = UNet().eval()
        meta, source = default_metadata(model), "random UNet() (no checkpoint)"
    props = torch.cuda.get_device_properties(0)
    report: dict = {
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "torch": torch.__version__, "cuda": torch.version.cuda, "model": source, "input": [3, 256, 1600],
        "results": [],
    }
    backend = TorchBackend(model, meta, device="cuda", compile=False)  # a copy in fp16 + channels_last
    ref_model = model.to("cuda").float().eval()
    rng = np.random.default_rng(0)
    norm, channels = meta["normalization"], int(meta["input"]["channels"])
    batches = {}
    for n in args.batch_sizes:
        grays = np.stack([synth_image(rng)[0] for _ in range(min(n, 8))])
        x = to_model_input(np.resize(grays, (n, *grays.shape[1:])), norm["mean"], norm["std"], channels)
        with torch.no_grad():
            want = torch.sigmoid(ref_model(torch.from_numpy(x).cuda())).float().cpu().numpy()
        batches[n] = (x, want)
    net = backend._eager
    for n, (x, want) in batches.items():
        got = backend.predict_proba(x)
        xg = torch.from_numpy(x).cuda().to(torch.float16).contiguous(memory_format=torch.channels_last)

        def compute() -> None:
            with torch.inference_mode():
                net(xg)

        report["results"].append({
            "backend": "torch-cuda-fp16-channels_last", "batch": n,
            "images_per_s": round(_rate(lambda: backend.predict_proba(x), n, args.seconds, torch.cuda.synchronize), 1),
            "compute_images_per_s": round(_rate(compute, n, args.seconds, torch.cuda.synchronize), 1),
            **_accuracy(got, want),
        })
        print(json.dumps(report["results"][-1]), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_paths: dict = {}
        try:
            from steelfast.inference.export import export_onnx
            from steelfast.inference.onnx_fp16 import to_fp16_onnx

            onnx_paths["fp32"] = export_onnx(copy.deepcopy(ref_model).cpu(), Path(tmp) / "model.onnx", metadata=meta)
            onnx_paths["fp16"] = to_fp16_onnx(onnx_paths["fp32"], Path(tmp) / "model.fp16.onnx")
        except ImportError as exc:
            report["onnx"] = f"not available: {exc}"
        if onnx_paths:
            _onnxruntime(report, onnx_paths, batches, args.seconds)
        if "fp32" in onnx_paths:
            _tensorrt(report, onnx_paths["fp32"], batches, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
