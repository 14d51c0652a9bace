"""FP16 ONNX against FP32 ONNX on the bundled models: the figures behind the README's tolerance.

A standalone script (no pytest, no GPU): exports each bundled model to a float32 ONNX file,
converts it with :func:`steelfast.inference.onnx_fp16.convert_to_fp16`, runs both with ONNX Runtime on the
CPU over real Severstal images (``../shared/data/severstal/images`` or ``$STEELFAST_SHARED_DATA``;
skipped when absent) and over synthetic images from :func:`steelfast.data.synth.synth_image`, and prints
one JSON object. Per model and image set:

* ``mean_abs_diff``: mean |p16 - p32| over all pixels and classes of all images, and
  ``worst_image_mean_abs_diff`` the largest per-image mean;
* ``flipped_fraction``: share of pixels whose mask at threshold 0.5 differs, and
  ``worst_image_flipped_fraction``;
* ``max_abs_diff``: the largest single-pixel difference;
* ``gate_disagreements``: (image, class) maps that are all zero (gated off) in one model only.

The default model's gate switches most maps off on synthetic images (and three of four classes on
every image), so ``default-gate-off`` repeats it with the model's gate thresholds set to 0 before
the export: every class map then goes through the float16 decoder.

ONNX Runtime's CPU provider has float16 kernels for few operators and casts around the others, so
activations are rounded to float16 between operators but most arithmetic runs in float32;
``tests/test_onnx_fp16.py`` also runs the float16 model with ONNX's reference evaluator (float16
arithmetic in NumPy) on a small input.

Usage: ``python bench/fp16_parity.py [--real 100] [--synthetic 20] [--threads 1] [--data DIR] [--out result.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    means, flips, worst, gates = [], [], 0.0, 0
    for p32, p16 in pairs:
        diff = np.abs(p16.astype(np.float32) - p32)
        means.append(float(diff.mean()))
        flips.append(float(((p32 > 0.5) != (p16 > 0.5)).mean()))
        worst = max(worst, float(diff.max()))
        off32, off16 = ~p32.any(axis=(-2, -1)), ~p16.any(axis=(-2, -1))
        gates += int((off32 != off16).sum())
    return {
        "images": len(pairs),
        "mean_abs_diff": float(np.mean(means)) if means else None,
        "worst_image_mean_abs_diff": max(means, default=None),
        "flipped_fraction": float(np.mean(flips)) if flips else None,
        "worst_image_flipped_fraction": max(flips, default=None),
        "max_abs_diff": worst,
        "gate_disagreements": gates,
    }


def _gate_off(dst: Path) -> Path:
    """The bundled default model exported with its gate thresholds set to 0 (every class map kept)."""
    from steelfast.checkpoint import load_checkpoint
    from steelfast.inference.export import export_onnx
    from steelfast.model_files import bundled_checkpoint_path

    model, meta = load_checkpoint(bundled_checkpoint_path("default"))
    model.set_gate_thresholds([0.0] * len(meta["classes"]))
    return export_onnx(model, dst, metadata=meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, default=100, help="Real images to use (the first N by name).")
    parser.add_argument("--synthetic", type=int, default=20, help="Synthetic images to use (seed 0).")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime and torch threads.")
    parser.add_argument("--data", type=Path, default=None,
                        help="Real-data folder with images/ (default: steelfast.data.real.shared_data_dir()).")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from steelfast.data.real import shared_data_dir
    from steelfast.data.synth import synth_image
    from steelfast.images import read_gray, to_model_input
    from steelfast.inference.export import export_onnx
    from steelfast.inference.onnx_file import read_onnx_metadata
    from steelfast.inference.onnx_fp16 import fp16_converter_version, to_fp16_onnx
    from steelfast.model_files import BUNDLED_MODELS, bundled_checkpoint_path

    torch.set_num_threads(args.threads)
    folder = (args.data or shared_data_dir()) / "images"
    real = sorted(folder.glob("*.jpg"))[: args.real] if folder.is_dir() else []
    rng = np.random.default_rng(0)
    synthetic = [synth_image(rng)[0] for _ in range(args.synthetic)]
    report: dict = {
        "converter": fp16_converter_version(), "onnxruntime": ort.__version__, "threshold": 0.5,
        "real_images": str(folder) if real else f"absent ({folder})", "models": {},
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        exported = {name: export_onnx(bundled_checkpoint_path(name), Path(tmp) / f"{name}.onnx") for name in BUNDLED_MODELS}
        exported["default-gate-off"] = _gate_off(Path(tmp) / "default-gate-off.onnx")
        for name, fp32 in exported.items():
            start = time.perf_counter()
            fp16 = to_fp16_onnx(fp32, Path(tmp) / f"{name}.fp16.onnx")
            seconds = time.perf_counter() - start
            meta = read_onnx_metadata(fp32)
            norm, channels = meta["normalization"], int(meta["input"]["channels"])
            sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (fp32, fp16)]
            entry: dict = {"conversion_s": round(seconds, 2), "fp16_bytes": fp16.stat().st_size,
                           "fp32_bytes": fp32.stat().st_size}
            for label, grays in (("real", [read_gray(p) for p in real]), ("synthetic", synthetic)):
                pairs = []
                for gray in grays:
                    x = to_model_input(gray[None], norm["mean"], norm["std"], channels)
                    p32, p16 = (s.run(None, {"image": x})[0] for s in sessions)
                    pairs.append((p32, p16))
                entry[label] = _stats(pairs)
            report["models"][name] = entry
            print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
