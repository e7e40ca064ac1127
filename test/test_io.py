"""Frame sources and DAVIS label PNGs (edgetam_core.io): no model needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetam_core.errors import InputError
from edgetam_core.io import (
    count_frames,
    davis_palette,
    first_frame_size,
    list_image_files,
    overlay_labels,
    palette_array,
    read_frames,
    read_image,
    read_label_png,
    write_label_png,
)


def _frame(value: tuple[int, int, int], h: int = 24, w: int = 32) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.uint8), (h, w, 3)).copy()


# Palette ----------------------------------------------------------------------------------------
def test_davis_palette_known_colours() -> None:
    pal = davis_palette()
    assert isinstance(pal, bytes) and len(pal) == 768
    arr = palette_array()
    assert arr.shape == (256, 3) and arr.dtype == np.uint8
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        4: (0, 0, 128),
        5: (128, 0, 128),
        6: (0, 128, 128),
        7: (128, 128, 128),
        8: (64, 0, 0),
        9: (192, 0, 0),
        255: (224, 224, 192),
    }
    for index, rgb in expected.items():
        assert tuple(arr[index]) == rgb, index
    assert len({tuple(c) for c in arr}) == 256  # all distinct


# Label PNGs -------------------------------------------------------------------------------------
def test_label_png_round_trip_is_indexed_with_palette(tmp_path: Path) -> None:
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[2:8, 3:10] = 1
    labels[10:18, 12:25] = 2
    labels[0, 0] = 255
    path = write_label_png(tmp_path / "sub" / "00000.png", labels)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert bytes(img.getpalette()[:768]) == davis_palette()  # type: ignore[index]
        assert img.size == (30, 20)
    np.testing.assert_array_equal(read_label_png(path), labels)


def test_write_label_png_rejects_bad_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_label_png(tmp_path / "a.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        write_label_png(tmp_path / "b.png", np.full((4, 4), 300, dtype=np.int32))
    write_label_png(tmp_path / "c.png", np.full((4, 4), 7, dtype=np.int64))  # fits: converted
    assert read_label_png(tmp_path / "c.png").max() == 7


def test_read_label_png_grey_and_rgb(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    Image.fromarray(labels).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "grey.png"), labels)
    rgb = palette_array()[labels]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "rgb.png"), labels)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(InputError, match="not in the palette"):
        read_label_png(tmp_path / "odd.png")
    with pytest.raises(InputError, match="not found"):
        read_label_png(tmp_path / "missing.png")


# Folders of images ------------------------------------------------------------------------------
def test_read_frames_folder_natural_order_and_rgb(tmp_path: Path) -> None:
    colours = {"frame10.png": (0, 0, 255), "frame2.jpg": (0, 255, 0), "frame1.png": (255, 0, 0)}
    for name, colour in colours.items():
        Image.fromarray(_frame(colour)).save(tmp_path / name, quality=100)
    (tmp_path / "notes.txt").write_text("ignored")
    names = [p.name for p in list_image_files(tmp_path)]
    assert names == ["frame1.png", "frame2.jpg", "frame10.png"]
    frames = list(read_frames(tmp_path))
    assert len(frames) == 3 == count_frames(tmp_path)
    for frame, name in zip(frames, names, strict=True):
        assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8
        assert frame.flags.writeable
        np.testing.assert_allclose(frame.mean(axis=(0, 1)), colours[name], atol=3)
    assert first_frame_size(tmp_path) == (24, 32)


def test_read_image_converts_grey_palette_and_alpha(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 6), 77, dtype=np.uint8)).save(tmp_path / "grey.png")
    rgba = np.zeros((5, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    write_label_png(tmp_path / "pal.png", np.ones((5, 6), dtype=np.uint8))
    assert read_image(tmp_path / "grey.png")[0, 0].tolist() == [77, 77, 77]
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]
    assert read_image(tmp_path / "pal.png")[0, 0].tolist() == [128, 0, 0]
    # A single image file is a one-frame input.
    assert count_frames(tmp_path / "grey.png") == 1
    assert len(list(read_frames(tmp_path / "grey.png"))) == 1


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_frames(tmp_path / "nope")
    with pytest.raises(InputError, match="not found"):
        count_frames(tmp_path / "nope.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .jpg/.jpeg/.png images"):
        read_frames(empty)
    with pytest.raises(InputError, match="no .jpg/.jpeg/.png images"):
        count_frames(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(_frame((1, 2, 3))).save(bad / "00000.png")
    (bad / "00001.jpg").write_bytes(b"this is not a jpeg")
    frames = read_frames(bad)
    assert next(frames).shape == (24, 32, 3)
    with pytest.raises(InputError, match="cannot decode image .*00001.jpg"):
        next(frames)
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="cannot open .* as a video"):
        read_frames(text)


# Videos ---------------------------------------------------------------------------------------
def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import cv2
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_read_frames_video_is_rgb(tmp_path: Path) -> None:
    colours = [(220, 20, 20), (20, 220, 20), (20, 20, 220), (200, 200, 30)]
    path = tmp_path / "clip.avi"
    _write_video(path, [_frame(c, 48, 64) for c in colours])
    assert count_frames(path) == 4
    assert first_frame_size(path) == (48, 64)
    frames = list(read_frames(path))
    assert len(frames) == 4
    for frame, colour in zip(frames, colours, strict=True):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        np.testing.assert_allclose(frame.mean(axis=(0, 1)), colour, atol=12)


# Drawing ----------------------------------------------------------------------------------------
def test_overlay_labels_colours_objects_only() -> None:
    frame = _frame((100, 100, 100), 10, 10)
    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[2:8, 2:8] = 1
    out = overlay_labels(frame, labels, alpha=0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], frame[0, 0])  # background untouched
    assert tuple(out[5, 5]) == (114, 50, 50)  # interior: half palette colour 1 (128, 0, 0)
    assert tuple(out[2, 5]) == (128, 0, 0)  # outline: full colour
