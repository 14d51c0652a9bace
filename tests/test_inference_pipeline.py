"""The folder pipeline (steelfast.inference.pipeline): bad files, streaming, empty folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from segment_helpers import make_folder, oracle

from steelfast.inference.backends.torch_backend import TorchBackend
from steelfast.inference.pipeline import iter_segment_folder, segment_folder
from steelfast.inference.segmenter import Segmenter


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path)


def test_segment_folder_skips_bad_files_and_keeps_the_rest(backend: TorchBackend, folder: Path) -> None:
    frame = segment_folder(folder, segmenter=Segmenter(backend=backend, batch_size=2))
    good = [f"img{i:02d}.jpg" for i in (0, 1, 2, 4, 6)]
    assert frame["ImageId"].tolist() == [g for g in good for _ in range(4)]
    assert frame["ClassId"].tolist() == [1, 2, 3, 4] * 5
    assert set(frame.attrs["failures"]) == {"img03.jpg", "img05.jpg"}
    assert "img05.jpg" in frame.attrs["failures"]["img05.jpg"]
    for image_id, group in frame.groupby("ImageId"):
        gray = cv2.imread(str(folder / image_id), cv2.IMREAD_GRAYSCALE)
        assert group["EncodedPixels"].tolist() == oracle(backend, gray)


def test_iter_segment_folder_streams_results(backend: TorchBackend, folder: Path) -> None:
    results = list(iter_segment_folder(folder, segmenter=Segmenter(backend=backend, batch_size=3), skip=["img00.jpg"]))
    assert sorted(r.image_id for r in results) == [f"img{i:02d}.jpg" for i in range(1, 7)]
    assert {r.image_id for r in results if r.error} == {"img03.jpg", "img05.jpg"}
    assert all(len(r.encoded) == 4 for r in results if r.error is None)


def test_empty_folder_is_an_error(backend: TorchBackend, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        segment_folder(tmp_path / "empty", segmenter=Segmenter(backend=backend))


def test_segment_folder_takes_a_list_of_files_in_its_order(backend: TorchBackend, folder: Path) -> None:
    seg = Segmenter(backend=backend, batch_size=2)
    files = [folder / "img04.jpg", str(folder / "img00.jpg"), folder / "img05.jpg"]
    frame = segment_folder(iter(files), segmenter=seg)  # any iterable of paths
    assert frame["ImageId"].tolist() == ["img04.jpg"] * 4 + ["img00.jpg"] * 4
    assert set(frame.attrs["failures"]) == {"img05.jpg"}
    whole = segment_folder(folder, segmenter=seg).set_index(["ImageId", "ClassId"])
    assert frame.set_index(["ImageId", "ClassId"]).equals(whole.loc[frame.set_index(["ImageId", "ClassId"]).index])


@pytest.mark.parametrize(("files", "exc", "match"), [
    ([], ValueError, r"no image files given \(an empty list\)"),
    (3, TypeError, "folder must be a path or a list of image paths, got int 3"),
    (b"x.jpg", TypeError, "folder must be a path or a list of image paths, got bytes b'x.jpg'"),
    (["a/x.jpg", "b/x.jpg"], ValueError, r"two files are named 'x.jpg': \['a/x.jpg', 'b/x.jpg'\]"),
])
def test_segment_folder_bad_file_lists(backend: TorchBackend, files: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        segment_folder(files, segmenter=Segmenter(backend=backend))
