"""edgetam_ros.conversions: image messages <-> numpy with cv_bridge's semantics (no ROS)."""

from __future__ import annotations

import array
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from edgetam_core.errors import InputError
from edgetam_core.types import FrameResult, ObjectResult
from edgetam_ros.conversions import (
    ENCODINGS,
    compressed_to_rgb,
    image_fields,
    image_to_rgb,
    label_image,
    masks_of,
    rgb_to_compressed,
    summarize,
)

RNG = np.random.default_rng(7)
H, W = 5, 7


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Any:
    """An Image-like message holding ``pixels`` (H, W, C) of any dtype, rows padded by ``pad``."""
    h, w = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(
        height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
        step=padded.shape[1], data=padded.tobytes(),
    )


def expected_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    p = pixels
    if p.dtype == np.uint16:  # cv_bridge: convertTo(CV_8U, 255/65535), rounded
        p = np.round(p.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    if order == "mono":
        return np.repeat(p[:, :, :1], 3, axis=2)
    if order.startswith("bgr"):
        return p[:, :, 2::-1]
    return p[:, :, :3]


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_every_encoding_with_padding_and_endianness(encoding: str, pad: int,
                                                    bigendian: bool) -> None:
    info = ENCODINGS[encoding]
    dtype = np.uint16 if info.bytes_per_channel == 2 else np.uint8
    hi = 65536 if dtype == np.uint16 else 256
    pixels = RNG.integers(0, hi, (H, W, info.channels)).astype(dtype)
    pixels[0, 0] = hi - 1
    rgb = image_to_rgb(raw_msg(pixels, encoding, pad, bigendian))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expected_rgb(pixels, info.order))


def test_sixteen_bit_scaling_matches_cv_bridge() -> None:
    values = np.array([[0, 128, 129, 257, 32767, 65535]], np.uint16)[:, :, None]
    rgb = image_to_rgb(raw_msg(values, "mono16"))
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 1, 127, 255]
    # the same image through OpenCV (what cv_bridge calls)
    ref = cv2.convertScaleAbs(values[:, :, 0], alpha=255.0 / 65535.0)
    np.testing.assert_array_equal(rgb[:, :, 0], ref)


def test_rgb8_without_padding_is_zero_copy() -> None:
    pixels = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    msg = raw_msg(pixels, "rgb8")
    msg.data = array.array("B", msg.data)  # what rclpy hands over
    rgb = image_to_rgb(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(rgb, pixels)


def test_data_as_list_of_ints() -> None:
    pixels = RNG.integers(0, 256, (2, 2, 1)).astype(np.uint8)
    msg = raw_msg(pixels, "mono8")
    msg.data = list(msg.data)
    np.testing.assert_array_equal(image_to_rgb(msg)[:, :, 0], pixels[:, :, 0])


@pytest.mark.parametrize("encoding", ["yuv422", "32FC1", "bayer_rggb8", "16UC1", "8UC3", ""])
def test_unsupported_encodings_are_named(encoding: str) -> None:
    msg = SimpleNamespace(height=2, width=2, encoding=encoding, is_bigendian=0, step=8,
                          data=bytes(16))
    with pytest.raises(InputError, match=f"unsupported image encoding '{encoding}'"):
        image_to_rgb(msg)


def test_malformed_images() -> None:
    ok = raw_msg(np.zeros((H, W, 3), np.uint8), "rgb8")
    with pytest.raises(InputError, match="step 20 is smaller than width"):
        image_to_rgb(SimpleNamespace(**{**vars(ok), "step": 20}))
    with pytest.raises(InputError, match=r"data is 10 bytes but step \* height"):
        image_to_rgb(SimpleNamespace(**{**vars(ok), "data": bytes(10)}))
    with pytest.raises(InputError, match="data is"):
        image_to_rgb(SimpleNamespace(**{**vars(ok), "data": bytes(len(ok.data) + 1)}))
    with pytest.raises(InputError, match="empty image"):
        image_to_rgb(SimpleNamespace(**{**vars(ok), "height": 0, "data": b""}))


def test_compressed_round_trips() -> None:
    rgb = RNG.integers(0, 256, (24, 32, 3)).astype(np.uint8)
    fmt, data = rgb_to_compressed(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_rgb(SimpleNamespace(format=fmt, data=data)), rgb)
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[:, :24] = (200, 30, 30)
    fmt, data = rgb_to_compressed(smooth, "jpeg", quality=95)
    got = compressed_to_rgb(SimpleNamespace(format=fmt, data=array.array("B", data)))
    assert got.shape == smooth.shape
    assert np.abs(got.astype(int) - smooth).mean() < 4  # lossy, colors in RGB order
    assert got[16, 4, 0] > 150 and got[16, 4, 2] < 80


def test_compressed_grey_sixteen_bit_and_alpha_png() -> None:
    grey = RNG.integers(0, 256, (6, 8)).astype(np.uint8)
    ok, enc = cv2.imencode(".png", grey)
    got = compressed_to_rgb(SimpleNamespace(format="png", data=enc.tobytes()))
    np.testing.assert_array_equal(got, np.repeat(grey[:, :, None], 3, axis=2))
    deep = (grey.astype(np.uint16) * 257)
    ok, enc = cv2.imencode(".png", deep)
    got = compressed_to_rgb(SimpleNamespace(format="png", data=enc.tobytes()))
    np.testing.assert_array_equal(got[:, :, 0], grey)
    bgra = RNG.integers(0, 256, (6, 8, 4)).astype(np.uint8)
    ok, enc = cv2.imencode(".png", bgra)
    got = compressed_to_rgb(SimpleNamespace(format="bgra8; png compressed", data=enc.tobytes()))
    np.testing.assert_array_equal(got, bgra[:, :, 2::-1])


def test_bad_compressed_images() -> None:
    with pytest.raises(InputError, match="empty compressed image"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b""))
    with pytest.raises(InputError, match="neither JPEG nor PNG"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"GIF89a......"))
    with pytest.raises(InputError, match="compressedDepth"):
        compressed_to_rgb(SimpleNamespace(format="16UC1; compressedDepth png", data=b"\x89PNG"))
    with pytest.raises(InputError, match="cannot decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"\xff\xd8\xff\xe0 truncated"))


@pytest.mark.parametrize(("shape", "encoding"), [((H, W), "mono8"), ((H, W, 3), "rgb8")])
def test_image_fields_round_trip(shape: tuple[int, ...], encoding: str) -> None:
    pixels = RNG.integers(0, 256, shape).astype(np.uint8)
    fields = image_fields(pixels, encoding)
    assert isinstance(fields["data"], array.array) and fields["data"].typecode == "B"
    channels = 1 if len(shape) == 2 else 3
    assert (fields["height"], fields["width"], fields["step"]) == (H, W, W * channels)
    assert fields["encoding"] == encoding and fields["is_bigendian"] == 0
    back = image_to_rgb(SimpleNamespace(**fields))
    expected = np.repeat(pixels[:, :, None], 3, axis=2) if channels == 1 else pixels
    np.testing.assert_array_equal(back, expected)
    with pytest.raises(ValueError):
        image_fields(pixels, "rgb8" if channels == 1 else "mono8")


def frame_result(logits: dict[int, np.ndarray], scores: dict[int, float] | None = None,
                 ious: dict[int, float] | None = None) -> FrameResult:
    h, w = next(iter(logits.values())).shape
    objs = {
        i: ObjectResult(i, lg.astype(np.float32), np.zeros((4, 4), np.float32),
                        (ious or {}).get(i, 0.8), (scores or {}).get(i, 2.0))
        for i, lg in logits.items()
    }
    return FrameResult(frame_index=0, height=h, width=w, objects=objs)


def test_label_image_matches_frame_result() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(np.arange(1, 20), size=int(rng.integers(1, 5)), replace=False))
        logits = {int(i): rng.normal(size=(30, 40)).astype(np.float32) for i in ids}
        if len(ids) > 1:  # exact ties: the smaller id wins, as argmax does
            logits[int(ids[1])][0, :5] = logits[int(ids[0])][0, :5] = 3.0
        result = frame_result(logits)
        for thr in (0.0, 0.7):
            for obj in result.objects.values():
                obj.mask_threshold = thr
            got = label_image(result, masks_of(result, thr))
            np.testing.assert_array_equal(got, result.label_image())


def test_label_image_without_objects() -> None:
    result = FrameResult(frame_index=0, height=3, width=4)
    assert not label_image(result, {}).any()


def test_summaries() -> None:
    lg = np.full((20, 30), -5.0, np.float32)
    lg[4:9, 10:20] = 5.0  # 5 rows x 10 cols
    lg[12, 3] = 5.0  # a stray pixel widens the box
    empty = np.full((20, 30), -5.0, np.float32)
    result = frame_result({3: lg, 5: empty, 7: lg.copy()}, scores={3: 2.0, 5: 4.0, 7: -1.0},
                          ious={3: 1.3, 5: 0.5, 7: -0.2})
    s = {x.object_id: x for x in summarize(result, masks_of(result, 0.0), {3: "cup"})}
    a = s[3]
    assert a.label == "cup" and a.area == 51 and a.visible
    assert a.box == (3, 4, 17, 9)
    ys, xs = np.nonzero(lg > 0)
    assert a.centroid == pytest.approx((xs.mean(), ys.mean()))
    assert a.score == 1.0 and a.object_score == pytest.approx(1 / (1 + np.exp(-2.0)))
    b = s[5]
    assert b.area == 0 and not b.visible and b.box == (0, 0, 0, 0) and b.centroid == (0.0, 0.0)
    c = s[7]
    assert c.area == 51 and not c.visible and c.score == 0.0  # object score < 0: not visible
