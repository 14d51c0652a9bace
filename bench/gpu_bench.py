"""GPU inference speed: the torch CUDA fp16 backend (and TensorRT when it imports), with the GPU's name.

A standalone script for a CUDA machine (no pytest): prints one JSON object with images/s per
backend and batch size at 256x1600, the GPU name, and each backend's largest probability
difference from float32 eager PyTorch on the same GPU.

Two figures per backend and batch size:

* ``images_per_s``: :meth:`Backend.predict_proba` from a NumPy batch to NumPy probabilities,
  host-device copies included (what the folder pipeline gets);
* ``compute_images_per_s`` (torch only): the forward pass on a batch already on the GPU.

Usage: ``python bench/gpu_bench.py [--checkpoint CKPT] [--batch-sizes 1 8 32] [--seconds 3] [--out result.json]``
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

from steelfast.backends import TorchBackend
from steelfast.checkpoint import default_checkpoint_path, default_metadata, load_checkpoint
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="Checkpoint (default: shipped model, else random UNet()).")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="Batch sizes to time.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Timing window per measurement.")
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
    sync = torch.cuda.synchronize
    rng = np.random.default_rng(0)
    backend = TorchBackend(model, meta, device="cuda", compile=False)  # a copy in fp16 + channels_last
    ref_model = model.to("cuda").float().eval()
    net = backend._eager
    for n in args.batch_sizes:
        x = rng.normal(size=(n, 3, 256, 1600)).astype(np.float32)
        with torch.no_grad():
            want = torch.sigmoid(ref_model(torch.from_numpy(x).cuda())).float().cpu().numpy()
        got = backend.predict_proba(x)
        xg = torch.from_numpy(x).cuda().to(torch.float16).contiguous(memory_format=torch.channels_last)

        def compute() -> None:
            with torch.inference_mode():
                net(xg)

        report["results"].append({
            "backend": "torch-cuda-fp16-channels_last", "batch": n,
            "images_per_s": round(_rate(lambda: backend.predict_proba(x), n, args.seconds, sync), 1),
            "compute_images_per_s": round(_rate(compute, n, args.seconds, sync), 1),
            "max_abs_diff_vs_fp32": float(np.abs(got.astype(np.float32) - want).max()),
        })
        print(json.dumps(report["results"][-1]), file=sys.stderr, flush=True)
    try:
        import tensorrt as trt
    except ImportError as exc:
        report["tensorrt"] = f"not available ({exc})"
    else:
        from steelfast.backends import TensorRTBackend
        from steelfast.export import build_tensorrt_engine, export_onnx, read_onnx_metadata

        report["tensorrt"] = trt.__version__
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(copy.deepcopy(ref_model).cpu(), Path(tmp) / "model.onnx", metadata=meta)
            start = time.perf_counter()
            engine = build_tensorrt_engine(onnx_path, batch=(1, 8, max(args.batch_sizes)))
            report["tensorrt_build_s"] = round(time.perf_counter() - start, 1)
            trt_backend = TensorRTBackend(engine, read_onnx_metadata(onnx_path))
            for n in args.batch_sizes:
                x = rng.normal(size=(n, 3, 256, 1600)).astype(np.float32)
                with torch.no_grad():
                    want = torch.sigmoid(ref_model(torch.from_numpy(x).cuda())).float().cpu().numpy()
                got = trt_backend.predict_proba(x)
                report["results"].append({
                    "backend": "tensorrt-fp16", "batch": n,
                    "images_per_s": round(_rate(lambda: trt_backend.predict_proba(x), n, args.seconds, sync), 1),
                    "max_abs_diff_vs_fp32": float(np.abs(got.astype(np.float32) - want).max()),
                })
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
