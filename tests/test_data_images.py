"""read_image: which image files are accepted (and how they are converted) and which are refused."""

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from paddle_palm.data import images as images_module
from paddle_palm.data.images import MAX_IMAGE_PIXELS, inspect_image, read_image, read_image_rgb_pil
from paddle_palm.errors import ImageError, MissingFileError


@pytest.fixture
def photo():
    """A 37x53 BGR picture with structure in every channel."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    return cv2.GaussianBlur(base, (5, 5), 0)


def test_colour_jpeg_is_exactly_cv2_imread(tmp_path, photo):
    path = tmp_path / "P0001.jpg"
    cv2.imwrite(str(path), photo)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (37, 53, 3)
    assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_real_palm_jpeg_is_exactly_cv2_imread(shared_palm):
    path = shared_palm / "PALM-Training400" / "P0001.jpg"
    assert np.array_equal(read_image(path), cv2.imread(str(path)))


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path, photo):
    path = tmp_path / "gray.jpg"
    cv2.imwrite(str(path), photo[:, :, 0])
    image = read_image(path)
    assert image.shape == (37, 53, 3)
    assert np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2])


def test_cmyk_jpeg_is_converted_to_bgr(tmp_path, photo):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(photo[:, :, ::-1]).convert("CMYK").save(path, quality=95)
    image = read_image(path)
    assert image.shape == (37, 53, 3) and image.dtype == np.uint8
    # Colours survive the CMYK round trip approximately.
    assert np.abs(image.astype(int) - photo.astype(int)).mean() < 12


def test_png_8bit_rgba_drops_alpha(tmp_path, photo):
    path = tmp_path / "rgba.png"
    bgra = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(path), bgra)
    assert np.array_equal(read_image(path), photo)


def test_png_16bit_is_scaled_to_8bit(tmp_path, photo):
    path = tmp_path / "deep.png"
    deep = photo.astype(np.uint16) * 257  # 8-bit values spread over 16 bits
    deep[0, 0] = (65535, 0, 32896)
    cv2.imwrite(str(path), deep)
    image = read_image(path)
    expected = photo.copy()
    expected[0, 0] = (255, 0, 128)
    assert image.dtype == np.uint8
    assert np.array_equal(image, expected)


def test_png_16bit_grayscale(tmp_path):
    path = tmp_path / "gray16.png"
    gray = np.arange(0, 65535, 257 * 5, dtype=np.uint16).reshape(1, -1).repeat(3, axis=0)
    cv2.imwrite(str(path), gray)
    image = read_image(path)
    assert image.shape == (3, gray.shape[1], 3)
    assert np.array_equal(image[:, :, 1], (gray // 257).astype(np.uint8))


def test_palette_and_gray_alpha_png(tmp_path, photo):
    pal = tmp_path / "palette.png"
    Image.fromarray(photo[:, :, ::-1]).convert("P").save(pal)
    assert read_image(pal).shape == (37, 53, 3)
    la = tmp_path / "la.png"
    Image.fromarray(photo[:, :, 0]).convert("LA").save(la)
    image = read_image(la)
    assert np.array_equal(image[:, :, 2], photo[:, :, 0])


def test_bmp_is_accepted(tmp_path, photo):
    path = tmp_path / "x.bmp"
    cv2.imwrite(str(path), photo)
    assert np.array_equal(read_image(path), photo)


def test_format_is_taken_from_the_content_not_the_extension(tmp_path, photo):
    path = tmp_path / "really_png.jpg"
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    path.write_bytes((tmp_path / "a.png").read_bytes())
    assert np.array_equal(read_image(path), photo)


@pytest.mark.parametrize("content, expected", [
    (b"", "empty file"),
    (b"hello, this is text\n", "not an image"),
    (b"PK\x03\x04 an archive", "not an image"),
    (b"GIF89a\x01\x00\x01\x00", "not an image"),
    (b"\xff\xd8\xff\xe0 garbage header", "damaged JPEG header"),
])
def test_refused_files_name_the_file_and_the_expectation(tmp_path, content, expected):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and expected in message


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_truncated_files_are_refused(tmp_path, photo, suffix, capfd):
    whole = tmp_path / f"whole{suffix}"
    big = cv2.resize(photo, (200, 180))
    cv2.imwrite(str(whole), big)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match="truncated|damaged"):
        read_image(cut)
    assert capfd.readouterr().err == ""


def test_jpeg_with_trailing_data_is_accepted_after_a_full_decode(tmp_path, photo):
    path = tmp_path / "trailer.jpg"
    cv2.imwrite(str(path), photo)
    reference = cv2.imread(str(path))
    path.write_bytes(path.read_bytes() + b"TRAILER-DATA" * 10)
    assert np.array_equal(read_image(path), reference)


def _png_header_only(width, height):
    """A PNG whose header declares ``width x height`` (a decompression-bomb stand-in)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(12_000, 12_000))  # 144 megapixels in a few bytes
    with pytest.raises(ImageError, match="too large"):
        read_image(path)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(60_000, 60_000))  # over Pillow's own hard limit too
    with pytest.raises(ImageError, match="too large"):
        read_image(huge)


def test_pixel_limit_is_the_module_constant(tmp_path, photo, monkeypatch):
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), photo)
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 37 * 53 - 1)
    with pytest.raises(ImageError, match="too large"):
        read_image(path)
    assert MAX_IMAGE_PIXELS == 100_000_000


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not a file"):
        read_image(tmp_path)


def test_inspect_reports_format_size_mode(tmp_path, photo):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), photo)
    assert inspect_image(path) == ("PNG", (53, 37), "RGB")


def test_pil_reader_matches_seed_004_open_convert(tmp_path, photo):
    path = tmp_path / "x.jpg"
    cv2.imwrite(str(path), photo)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(np.asarray(read_image_rgb_pil(path)), expected)
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), photo.astype(np.uint16) * 257)
    assert np.array_equal(np.asarray(read_image_rgb_pil(deep)), photo[:, :, ::-1])
    with pytest.raises(ImageError):
        (tmp_path / "empty.jpg").write_bytes(b"")
        read_image_rgb_pil(tmp_path / "empty.jpg")


def test_damaged_data_is_refused_without_decoder_noise(tmp_path, photo, capfd):
    big = cv2.resize(photo, (120, 100))
    png = tmp_path / "damaged.png"
    cv2.imwrite(str(png), big)
    data = bytearray(png.read_bytes())
    data[100:140] = bytes(40)  # inside the image data; the file still ends with IEND
    png.write_bytes(bytes(data))
    jpg = tmp_path / "damaged.jpg"
    cv2.imwrite(str(jpg), big)
    data = bytearray(jpg.read_bytes())
    for i in range(400, 800, 7):
        data[i] = (data[i] * 31 + 7) % 256  # scrambled scan data; the end marker is intact
    jpg.write_bytes(bytes(data))
    for path in (png, jpg):
        with pytest.raises(ImageError, match="damaged") as info:
            read_image(path)
        assert str(path) in str(info.value)
    assert capfd.readouterr().err == ""  # no libpng/libjpeg messages on stderr


def test_quick_inspection_checks_headers_and_endings(tmp_path, photo):
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), cv2.resize(photo, (120, 100)))
    data = png.read_bytes()
    assert inspect_image(png, quick=True) == ("PNG", (120, 100), "RGB")
    png.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        inspect_image(png, quick=True)
    jpg = tmp_path / "x.jpg"
    cv2.imwrite(str(jpg), photo)
    jpg.write_bytes(jpg.read_bytes()[:-300])
    with pytest.raises(ImageError, match="truncated"):
        inspect_image(jpg, quick=True)
