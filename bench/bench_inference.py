"""Inference speed on the CPU: the best backend against plain eager PyTorch, and the folder pipeline.

Model: the bundled baseline U-Net, ``synthetic-unet`` (a trained model: the bf16 parity bounds
assume probabilities that are mostly far from 0.5; the default gated model is timed on real JPEGs
in ``bench_real_folder.py``). Input: one synthetic
256x1600 steel image (:func:`steelfast.data.synth.synth_image`).

* Reference: plain eager float32 PyTorch at batch 1 (``torch.sigmoid(model(x))`` under
  ``torch.no_grad``).
* Ours: the ``torch`` backend as ``backend="auto"`` builds it on this CPU (bfloat16,
  channels-last, :func:`steelfast.models.inference_graph`, ``torch.compile``), batch 1. Also
  recorded for the report: eager bfloat16 and ONNX Runtime.
* Goal 1: ours >= 4x the reference's images/s, with bfloat16 outputs close to float32 in the
  sense of :func:`assert_bf16_close`: mean |dp| <= 1e-3, 99.9th percentile <= 0.05 (measured 0.031), and at most
  0.05 % of the mask pixels flipping at threshold 0.5 (measured 0.012 %). A trained model has a few
  pixels near the decision boundary whose probability moves by up to ~0.2 in bfloat16 (logits
  rounded to 8 mantissa bits), so a max-difference bound would be meaningless.
* Goal 2: :func:`steelfast.segment_folder` over 200 synthetic JPEGs end to end (decode, model,
  post-processing, RLE) >= 85 % of the pure-model images/s of the same backend.
* images/s is the sustained rate, rounds over their total time (``stat="mean"``), each
  implementation timed for the same 30 rounds. Plain eager fp32 is bimodal: most rounds
  page-fault through fresh activation buffers (~115 ms), a few find them mapped (~85 ms), so its
  best round overstates its rate; the best-round ratio is printed beside the goal's.

Run:
``python -m pytest bench/bench_inference.py -p no:cacheprovider --benchmark-enable -s``
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import _MEANS, _TIMES, make_timed, speedup

from steelfast.checkpoint import load_checkpoint
from steelfast.data.synth import make_dataset, synth_image
from steelfast.images import to_model_input
from steelfast.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.export import export_onnx
from steelfast.inference.pipeline import segment_folder
from steelfast.inference.segmenter import Segmenter
from steelfast.model_files import bundled_checkpoint_path

BF16_MEAN_ATOL = 1e-3
BF16_P999_ATOL = 0.05
BF16_MASK_FLIPS = 5e-4
FP32_ATOL = 1e-4
N_FOLDER = 200
GROUP = "unet-cpu-256x1600"
ROUNDS = 30  # the same for every implementation in GROUP


@pytest.fixture(scope="module")
def model_and_meta() -> tuple[torch.nn.Module, dict]:
    # The shipped model only: an untrained one outputs ~0.5 everywhere, where the bf16 mask-flip bound is meaningless.
    path = bundled_checkpoint_path("synthetic-unet")
    if not path.is_file():
        pytest.fail(f"the shipped model {path} is missing; reinstall steelfast (pip install .)")
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def x1(model_and_meta: tuple) -> np.ndarray:
    _, meta = model_and_meta
    gray, _ = synth_image(np.random.default_rng(0))
    return to_model_input(gray, meta["normalization"]["mean"], meta["normalization"]["std"], meta["input"]["channels"])


@pytest.fixture(scope="module")
def reference_out(model_and_meta: tuple, x1: np.ndarray) -> np.ndarray:
    model, _ = model_and_meta
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x1))).numpy()


@pytest.fixture(scope="module")
def best(model_and_meta: tuple, x1: np.ndarray) -> TorchBackend:
    model, meta = model_and_meta
    backend = TorchBackend(model, meta, device="cpu", compile=True)
    start = time.perf_counter()
    backend.predict_proba(x1)  # compiles
    print(f"\ncompile: {time.perf_counter() - start:.1f} s (precision {backend.precision}, compiled {backend.compiled})")
    return backend


def assert_bf16_close(out: np.ndarray, reference: np.ndarray) -> None:
    """bfloat16 probabilities (N, C, H, W) against float32 ones, by the criteria in the module docstring."""
    diff = np.abs(out.astype(np.float32) - reference)
    print(f"\nbf16 vs fp32: max |dp| {diff.max():.4f}, mean {diff.mean():.6f}, 99.9% {np.quantile(diff, 0.999):.4f}")
    assert diff.mean() <= BF16_MEAN_ATOL
    assert np.quantile(diff, 0.999) <= BF16_P999_ATOL
    flipped = np.count_nonzero((out.astype(np.float32) > 0.5) != (reference > 0.5)) / reference.size
    print(f"mask pixels flipped at threshold 0.5: {flipped:.2e}")
    assert flipped <= BF16_MASK_FLIPS


def _eager_fp32(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x))).numpy()


def test_reference_eager_fp32_batch1(benchmark, model_and_meta: tuple, x1: np.ndarray, reference_out: np.ndarray) -> None:
    model, _ = model_and_meta
    out = make_timed(benchmark, ROUNDS)(GROUP, "eager_fp32_b1", lambda: _eager_fp32(model, x1))
    np.testing.assert_allclose(out, reference_out, atol=FP32_ATOL, rtol=0)


def test_best_backend_batch1(benchmark, best: TorchBackend, x1: np.ndarray, reference_out: np.ndarray) -> None:
    out = make_timed(benchmark, ROUNDS)(GROUP, "best_b1", lambda: best.predict_proba(x1))
    assert_bf16_close(out, reference_out)


def test_eager_bf16_batch1(benchmark, model_and_meta: tuple, x1: np.ndarray, reference_out: np.ndarray) -> None:
    model, meta = model_and_meta
    eager = TorchBackend(model, meta, device="cpu", compile=False)
    out = make_timed(benchmark, ROUNDS)(GROUP, "eager_bf16_cl_b1", lambda: eager.predict_proba(x1))
    assert_bf16_close(out, reference_out)


def test_onnxruntime_batch1(benchmark, model_and_meta: tuple, x1: np.ndarray, reference_out: np.ndarray,
                            tmp_path: Path) -> None:
    model, meta = model_and_meta
    session = OnnxRuntimeBackend(export_onnx(model, tmp_path / "m.onnx", metadata=meta))
    out = make_timed(benchmark, ROUNDS)(GROUP, "onnxruntime_fp32_b1", lambda: session.predict_proba(x1))
    np.testing.assert_allclose(out, reference_out, atol=FP32_ATOL, rtol=0)


def test_goal_best_backend_4x_eager() -> None:
    ratio = speedup(GROUP, "best_b1", "eager_fp32_b1", stat="mean")
    rates = {name: 1.0 / t for (g, name), t in _MEANS.items() if g == GROUP}
    print("\nimages/s (mean of the rounds): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(rates.items())))
    print(f"best / plain eager fp32: {ratio:.2f}x (best round against best round: "
          f"{speedup(GROUP, 'best_b1', 'eager_fp32_b1'):.2f}x)")
    assert ratio >= 4.0, f"best backend only {ratio:.2f}x plain eager fp32 (goal 4x)"


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = make_dataset(tmp_path_factory.mktemp("synth"), 0, N_FOLDER, seed=3, progress=False)
    return out / "test_images"


def test_segment_folder_200_jpegs(benchmark, best: TorchBackend, jpeg_folder: Path) -> None:
    segmenter = Segmenter(backend=best, batch_size=1)
    frame = benchmark.pedantic(lambda: segment_folder(jpeg_folder, segmenter=segmenter), rounds=2, iterations=1, warmup_rounds=0)
    if benchmark.stats is not None and not benchmark.disabled:
        _TIMES[(GROUP, "segment_folder_200")] = benchmark.stats.stats.min / N_FOLDER
        _MEANS[(GROUP, "segment_folder_200")] = benchmark.stats.stats.mean / N_FOLDER
    assert len(frame) == 4 * N_FOLDER and not frame.attrs["failures"]
    assert frame.groupby("ImageId").size().eq(4).all()


def test_goal_segment_folder_85_percent_of_model() -> None:
    share = speedup(GROUP, "segment_folder_200", "best_b1", stat="mean")
    print(f"\nsegment_folder / pure model images/s: {share:.1%}")
    assert share >= 0.85, f"segment_folder reaches only {share:.1%} of the model's images/s (goal 85 %)"
