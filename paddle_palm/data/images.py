"""Reading one image file safely: the accepted and refused inputs.

:func:`read_image` is the only place where the project decodes an image file
from disk (readers, datasets, prediction).  It returns what the course's
``cv2.imread(path)`` returns for a normal photograph (SPEC 1.3): a BGR
``uint8`` array of shape ``(H, W, 3)``.  For an 8-bit colour JPEG the result is
exactly ``cv2.imread(path, cv2.IMREAD_COLOR)``, so preprocessing A stays
bit-exact with the course.

Policy
------
=====================================  =========  ==========================================
input                                  decision   result
=====================================  =========  ==========================================
JPEG, 8-bit colour                     accepted   ``cv2.imread`` (BGR)
JPEG, grayscale                        accepted   gray copied to 3 channels (as ``cv2.imread``)
JPEG, CMYK / YCCK                      accepted   converted to BGR by OpenCV's decoder
PNG, 8-bit gray / colour / palette     accepted   BGR, gray copied to 3 channels
PNG or BMP with alpha (RGBA, LA)       accepted   alpha dropped (not composited)
PNG, 16-bit                            accepted   scaled to 8 bits: ``round(v / 257)``
BMP                                    accepted   BGR
zero-byte file                         refused    :class:`ImageError`
truncated JPEG / PNG / BMP             refused    :class:`ImageError` (``cv2.imread`` would
                                                  silently return a grey-padded picture for JPEG)
corrupt header, damaged data           refused    :class:`ImageError`
any other format (TIFF, GIF, WebP,     refused    :class:`ImageError` naming the formats
text, archives, ...)                              accepted
more than :data:`MAX_IMAGE_PIXELS`     refused    :class:`ImageError`, checked from the header
pixels (decompression bomb)                       before anything is decoded
missing file                           refused    :class:`MissingFileError`
=====================================  =========  ==========================================

The format is recognised from the file's first bytes, not from its extension.
A JPEG counts as complete when it ends with its end-of-image marker (trailing
zero padding allowed); one that does not (data appended by some cameras) is
fully decoded once with Pillow, which refuses truncated files, before it is
accepted.  PNG and BMP files are always fully decoded by Pillow first (PNG
checksums are verified), then by OpenCV.  A JPEG's EXIF orientation is applied, as ``cv2.imread`` does.
"""

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from paddle_palm.errors import ImageError, MissingFileError

#: Largest accepted image, in pixels (width x height), checked from the file header before
#: decoding.  The PALM originals are about 2124 x 2056 = 4.4 megapixels.
MAX_IMAGE_PIXELS = 100_000_000

#: The formats :func:`read_image` accepts.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP")

_EXPECTED = "expected a JPEG, PNG or BMP image"


def sniff_format(head):
    """The image format of a file from its first bytes: ``"JPEG"``, ``"PNG"``, ``"BMP"`` or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:2] == b"BM":
        return "BMP"
    return None


def _tail_is_complete(path, fmt, file_size, quick=False):
    """Cheap completeness check: a JPEG ends with its end-of-image marker FF D9.

    PNG and BMP files get the full check instead (Pillow verifies a PNG's checksums, and
    OpenCV would print libpng's complaints about a damaged one on stderr), unless ``quick``:
    then a PNG only has to end with its IEND chunk and a BMP is not checked.
    """
    if fmt == "BMP":
        return quick
    if fmt == "PNG" and not quick:
        return False
    with open(path, "rb") as fh:
        fh.seek(max(0, file_size - 4096))
        tail = fh.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9" if fmt == "JPEG" else b"IEND\xaeB`\x82")


def inspect_image(path, quick=False):
    """Check an image file without decoding it fully; return ``(format, (width, height), mode)``.

    Performs every check of the policy above except decoding the pixels: existence, size,
    format, header, pixel limit, completeness.

    Args:
        path: the image file.
        quick: check completeness from the file's end only (a fraction of a millisecond per
            file, for checking a whole folder up front); PNG and BMP data is then not verified.

    Raises:
        MissingFileError: the file does not exist.
        ImageError: the file is empty, not a JPEG/PNG/BMP, damaged, truncated or too large.
    """
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"image not found: {path}")
    if not path.is_file():
        raise ImageError(f"{path}: not a file; {_EXPECTED}")
    file_size = path.stat().st_size
    if file_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes); {_EXPECTED}")
    with open(path, "rb") as fh:
        fmt = sniff_format(fh.read(16))
    if fmt is None:
        raise ImageError(f"{path}: not an image file; {_EXPECTED}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size, mode = img.size, img.mode
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: image too large (decompression bomb?); at most {MAX_IMAGE_PIXELS:,} pixels are accepted"
        ) from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(f"{path}: damaged {fmt} header ({' '.join(str(exc).split())}); {_EXPECTED}") from None
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: {fmt} header declares an empty image ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{path}: image too large ({width}x{height} = {width * height:,} pixels); at most "
            f"{MAX_IMAGE_PIXELS:,} pixels are accepted (decompression-bomb guard)"
        )
    if not _tail_is_complete(path, fmt, file_size, quick):
        _decode_fully_with_pillow(path, fmt)
    return fmt, (width, height), mode


def _decode_fully_with_pillow(path, fmt):
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
    except Exception as exc:
        raise ImageError(
            f"{path}: truncated or damaged {fmt} file ({' '.join(str(exc).split())}); expected a complete image"
        ) from None


def _to_bgr_uint8(array, path):
    if array.dtype == np.uint16:
        array = np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported sample type {array.dtype}; expected 8- or 16-bit samples")
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim != 3:
        raise ImageError(f"{path}: unexpected image shape {array.shape}")
    channels = array.shape[2]
    if channels == 3:
        return array
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    if channels in (1, 2):  # gray, gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(array[:, :, 0]), cv2.COLOR_GRAY2BGR)
    raise ImageError(f"{path}: unexpected number of channels ({channels}); expected 1, 3 or 4")


def read_image(path):
    """Read an image file as a BGR ``uint8`` array of shape ``(H, W, 3)`` (see the module policy).

    Args:
        path: a JPEG, PNG or BMP file.

    Returns:
        numpy.ndarray: ``uint8``, ``(H, W, 3)``, BGR channel order, C-contiguous.  For an 8-bit
        colour JPEG this equals ``cv2.imread(path, cv2.IMREAD_COLOR)``.

    Raises:
        MissingFileError: the file does not exist.
        ImageError: the file is refused by the policy; the message names it and what was expected.
    """
    path = Path(path)
    fmt, _, _ = inspect_image(path)
    flags = cv2.IMREAD_COLOR if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    image = cv2.imread(os.fspath(path), flags)
    if image is None and not os.fspath(path).isascii():
        # OpenCV cannot open some non-ASCII paths (on Windows): decode from memory instead.
        image = cv2.imdecode(np.fromfile(os.fspath(path), dtype=np.uint8), flags)
    if image is None:
        raise ImageError(f"{path}: damaged {fmt} data (the decoder gave up); expected a complete, "
                         f"undamaged JPEG, PNG or BMP image")
    image = _to_bgr_uint8(image, path)
    return np.ascontiguousarray(image)


def read_image_rgb_pil(path):
    """Open an image as an RGB ``PIL.Image`` the way seed 004 does (``Image.open(...).convert("RGB")``).

    The file goes through the same checks as :func:`read_image`.  Pillow reduces a 16-bit PNG
    by clipping instead of scaling, so such files are decoded by :func:`read_image` instead.

    Returns:
        PIL.Image.Image: mode ``RGB``, fully loaded.
    """
    from PIL import Image

    path = Path(path)
    fmt, _, mode = inspect_image(path)
    if fmt == "PNG" or mode not in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "1"):
        return Image.fromarray(np.ascontiguousarray(read_image(path)[:, :, ::-1]))
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:
        raise ImageError(f"{path}: cannot decode this {fmt} file ({' '.join(str(exc).split())})") from None
