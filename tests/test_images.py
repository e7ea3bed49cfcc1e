"""The one image reader (`mobilevitv3.data.images`): images made here, read as a viewer shows them."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mobilevitv3.data.images import BACKGROUND, ImageError, as_rgb, read_bgr, read_rgb, try_read_bgr, try_read_rgb
from mobilevitv3.errors import UserError

ORIENTATION = 0x0112


def _blocks(h: int = 48, w: int = 64) -> np.ndarray:
    """An RGB image of flat 16x16 blocks (JPEG keeps flat blocks nearly exact), asymmetric under every rotation."""
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((16, 16, 1), np.uint8))


def test_read_rgb_scales_16_bit_png(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"          # the case Pillow's convert clips
    got = np.asarray(read_rgb(tmp_path / "deep.png"))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert got.shape == (64, 64, 3) and (got == got[..., :1]).all()   # gray to three equal channels
    assert np.abs(got[..., 0].astype(int) - expected).max() <= 1
    assert (got[..., 0] == 255).mean() < 0.01                          # clipping would make ~99% of them 255


def test_read_rgb_scales_32_bit_int_of_16_bit_range(tmp_path):
    values = np.array([[0, 32768], [65535, 1000]], np.int32)
    got = np.asarray(as_rgb(Image.fromarray(values, mode="I")))[..., 0]
    assert got.tolist() == [[0, 128], [255, 4]]


def test_read_rgb_applies_exif_orientation(tmp_path):
    pixels = _blocks()
    exif = Image.Exif()
    exif[ORIENTATION] = 6                  # "rotate 90 clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", quality=98, exif=exif.tobytes())
    got = np.asarray(read_rgb(tmp_path / "phone.jpg")).astype(int)
    expected = np.rot90(pixels, k=-1).astype(int)                      # clockwise
    assert got.shape == expected.shape == (64, 48, 3)
    assert np.abs(got - expected).mean() < 4                          # JPEG noise only
    assert np.abs(got - np.rot90(pixels, k=1).astype(int)).mean() > 20   # not the other way round


def test_read_rgb_composites_palette_transparency_on_white(tmp_path):
    index = np.zeros((8, 8), np.uint8)
    index[2:6, 2:6] = 1
    im = Image.fromarray(index, mode="P")
    im.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)   # index 0 is black and fully transparent
    im.save(tmp_path / "logo.png", transparency=0)
    got = np.asarray(read_rgb(tmp_path / "logo.png"))
    assert tuple(got[0, 0]) == BACKGROUND == (255, 255, 255)
    assert tuple(got[3, 3]) == (200, 30, 40)


def test_read_rgb_blends_partial_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128                       # half transparent red over white: (228, 127, 127)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "half.png")
    got = np.asarray(read_rgb(tmp_path / "half.png")).astype(int)
    assert np.abs(got[0, 0] - np.array([228, 127, 127])).max() <= 1


def test_read_rgb_converts_la_and_cmyk(tmp_path):
    la = np.stack([np.full((4, 4), 10, np.uint8), np.zeros((4, 4), np.uint8)], -1)   # fully transparent
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    assert np.asarray(read_rgb(tmp_path / "la.png")).min() == 255
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")        # pure red in CMYK
    r, g, b = np.asarray(read_rgb(tmp_path / "cmyk.jpg"))[0, 0].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_read_rgb_folder_is_named_a_folder(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        read_rgb(tmp_path)
    assert issubclass(ImageError, UserError)


def test_read_rgb_missing_and_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="image not found"):
        read_rgb(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image file"):
        read_rgb(tmp_path / "notes.png")


def test_read_rgb_truncated_file_is_an_error(tmp_path):
    Image.fromarray(_blocks(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        read_rgb(tmp_path / "cut.jpg")
    assert try_read_rgb(tmp_path / "cut.jpg") is None
    assert try_read_rgb(tmp_path) is None


def test_read_rgb_keeps_plain_rgb_exact(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    assert (np.asarray(read_rgb(tmp_path / "plain.png")) == pixels).all()


def test_read_bgr_is_read_rgb_in_opencv_order(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 2] = 180
    rgba[:3, :, 3] = 255                      # top half opaque blue, bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "half.png")
    bgr = read_bgr(tmp_path / "half.png")
    assert bgr.shape == (6, 6, 3) and bgr.flags["C_CONTIGUOUS"]
    assert tuple(bgr[0, 0]) == (180, 0, 0) and tuple(bgr[5, 5]) == (255, 255, 255)
    assert (bgr[..., ::-1] == np.asarray(read_rgb(tmp_path / "half.png"))).all()
    with pytest.raises(ImageError, match="is a folder"):
        read_bgr(tmp_path)
    assert try_read_bgr(tmp_path / "missing.jpg") is None


def test_every_data_reader_follows_the_one_rule(tmp_path):
    from mobilevitv3.data.classification import ClassificationSet
    from mobilevitv3.data.masks import read_image
    from mobilevitv3.data.transforms import Pipeline

    def folder_read(path, backend):   # what an ImageFolder data set reads for the PIL and the v1 OpenCV pipelines
        return ClassificationSet([(str(path), 0)], ["a"], Pipeline(backend=backend), train=False, size=32)._raw(0)[0]
    pixels = _blocks()
    exif = Image.Exif()
    exif[ORIENTATION] = 8                  # "rotate 90 counter-clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", quality=98, exif=exif.tobytes())
    expected = np.asarray(read_rgb(tmp_path / "phone.jpg"))
    assert expected.shape == (64, 48, 3)
    assert (np.asarray(folder_read(tmp_path / "phone.jpg", "pil")) == expected).all()       # ImageFolder
    assert (folder_read(tmp_path / "phone.jpg", "opencv")[..., ::-1] == expected).all()     # v1 OpenCV pipeline
    assert (read_image(tmp_path / "phone.jpg").permute(1, 2, 0).numpy() == expected).all()  # VOC / ADE20K
    assert folder_read(tmp_path, "pil") is None and read_image(tmp_path) is None          # a folder: skipped
