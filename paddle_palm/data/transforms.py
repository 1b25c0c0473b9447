"""Image preprocessing for the PALM models: the course's two pipelines and training augmentation.

Preprocessing A (SPEC 1.3, seeds 000/001), used by the generator readers and the
SENet18/ResNet recipes: BGR ``uint8`` image -> ``cv2.resize(img, (size, size))``
(bilinear) -> HWC to CHW -> ``float32`` -> ``/ 255.`` -> ``* 2.0 - 1.0``; values lie
in [-1, 1].  The operations run in exactly that order and precision, so the
result is bit-for-bit the course's.

Preprocessing B (SPEC 1.4, seed 004), used by the SqueezeNet recipe: RGB image ->
:func:`padding_black` (longer side scaled to ``size``, aspect ratio kept, pasted
centred on a black square) -> training only: random horizontal and vertical
flips -> ``ToTensor`` (``/ 255``, CHW) -> ``Normalize(0.5, 0.5)``.  Seed 004 also
flips its validation images (it builds the validation set with the training
flag on); here flips happen only when asked for.

Both pipelines are split into a resize step that gives a ``uint8`` image of
``size x size`` (what a dataset may cache) and a normalisation step, with
:class:`Augmentation` applied between the two.

Either may add a contrast enhancement of the resized image, named after a ``+``
(``"B+clahe"``): ``clahe`` equalises the lightness locally (OpenCV's CLAHE on the L channel of
CIE Lab, clip limit 2, 8x8 tiles) and ``graham`` subtracts the local mean colour (4 x (image -
Gaussian blur of sigma S/30) + 128, the outside of the fundus set to 128, as in Ben Graham's
diabetic-retinopathy preprocessing).  Both bring out small pale patches such as the atrophy of
pathologic myopia.  The enhancement is part of the resize step, so a cache holds the enhanced
image and augmentation acts on it.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from paddle_palm.data.images import read_image, read_image_rgb_pil
from paddle_palm.errors import ConfigError, ImageError

#: Names of the two preprocessing pipelines.
PREPROCESS_METHODS = ("A", "B")
#: Contrast enhancements a pipeline may add after a ``+`` (``"A+graham"``, ``"B+clahe"``).
ENHANCEMENTS = ("clahe", "graham")
#: Mean and standard deviation of preprocessing B's Normalize (seed 004).
B_MEAN = 0.5
B_STD = 0.5


def check_method(method):
    """Normalise a preprocessing name: ``"A"`` or ``"B"``, optionally with an enhancement (``"b+CLAHE"`` -> ``"B+clahe"``).

    Raises:
        ConfigError: any other value.
    """
    base, plus, extra = str(method).partition("+")
    base, extra = base.strip().upper(), extra.strip().lower()
    if base not in PREPROCESS_METHODS or (plus and extra not in ENHANCEMENTS):
        raise ConfigError(f"unknown preprocessing {method!r}; expected A or B, optionally with +"
                          f"{' or +'.join(ENHANCEMENTS)} (e.g. B+{ENHANCEMENTS[0]})")
    return f"{base}+{extra}" if plus else base


def base_method(method):
    """The pipeline of a preprocessing name without its enhancement: ``"A"`` or ``"B"``."""
    return check_method(method).partition("+")[0]


def enhancement_of(method):
    """The enhancement of a preprocessing name (``"clahe"``, ``"graham"``), or None."""
    return check_method(method).partition("+")[2] or None


def check_size(size):
    """Check an output image size (a positive int) and return it.

    Raises:
        ConfigError: not a positive integer.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"image size must be a positive integer, got {size!r}")
    return int(size)


def _check_hwc3(image, what="image"):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"{what}: expected a uint8 array of shape (H, W, 3), got {dtype} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{what}: empty image of shape {image.shape}")


# --------------------------------------------------------------------------- preprocessing A


def resize_a(image_bgr, size=224):
    """Preprocessing A's resize: ``cv2.resize(img, (size, size))`` with OpenCV's default bilinear."""
    _check_hwc3(image_bgr)
    return cv2.resize(image_bgr, (check_size(size), check_size(size)))


def normalize_a(image_hwc):
    """Preprocessing A after the resize: CHW, ``float32``, ``/ 255.``, ``* 2.0 - 1.0`` (SPEC 1.3)."""
    _check_hwc3(image_hwc)
    img = np.transpose(image_hwc, (2, 0, 1))
    img = img.astype("float32")
    img = img / 255.0
    img = img * 2.0 - 1.0
    return img


def preprocess_a(image_bgr, size=224):
    """The course's ``transform_img`` (seeds 000/001), for any input size.

    Args:
        image_bgr: ``uint8`` array ``(H, W, 3)`` in BGR order, as from ``cv2.imread``.
        size: output side length (224 in the course).

    Returns:
        numpy.ndarray: ``float32`` ``(3, size, size)`` with values in [-1, 1], BGR channel order.
    """
    return normalize_a(resize_a(image_bgr, size))


# --------------------------------------------------------------------------- preprocessing B


def padding_black(image, size=224):
    """Seed 004's ``padding_black``: fit the image in a black ``size x size`` square.

    The longer side is scaled to ``size`` (``scale = size / max(w, h)``, new sides truncated
    to int, Pillow's default bicubic resampling) and the result is pasted centred on a black
    RGB canvas.

    Args:
        image: a ``PIL.Image`` (converted to RGB if needed).
        size: the side of the square.

    Returns:
        PIL.Image.Image: RGB, ``size x size``.
    """
    from PIL import Image

    size = check_size(size)
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    scale = float(size) / max(w, h)
    # max(1, ...) only matters for an extreme aspect ratio the seed would crash on.
    new_size = [max(1, int(x)) for x in (w * scale, h * scale)]
    foreground = image.resize(new_size, Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(foreground, ((size - foreground.size[0]) // 2, (size - foreground.size[1]) // 2))
    return canvas


def resize_b(image, size=224):
    """Preprocessing B's resize step on a BGR array or a PIL image; returns an RGB ``uint8`` array."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        _check_hwc3(image)
        image = Image.fromarray(np.ascontiguousarray(image[:, :, ::-1]))
    return np.asarray(padding_black(image, size))


def normalize_b(image_rgb):
    """Preprocessing B after the resize: ``ToTensor`` (``/ 255``, CHW) then ``Normalize(0.5, 0.5)``."""
    _check_hwc3(image_rgb)
    img = np.transpose(image_rgb, (2, 0, 1)).astype(np.float32) / np.float32(255.0)
    return (img - np.float32(B_MEAN)) / np.float32(B_STD)


def preprocess_b(image, size=224, train=False, rng=None):
    """Seed 004's transform: :func:`padding_black`, flips when training, ToTensor, Normalize(0.5, 0.5).

    Args:
        image: a ``PIL.Image`` (as seed 004 opens it) or a BGR ``uint8`` array.
        size: output side length.
        train: apply random horizontal and vertical flips (probability 0.5 each).
        rng: ``numpy.random.Generator`` or ``RandomState`` for the flips (a fresh unseeded
            generator when None).

    Returns:
        numpy.ndarray: ``float32`` ``(3, size, size)`` in [-1, 1], RGB channel order.
    """
    rgb = resize_b(image, size)
    if train:
        rgb = Augmentation()(rgb, np.random.default_rng() if rng is None else rng)
    return normalize_b(rgb)


# --------------------------------------------------------------------------- enhancements


def enhance_clahe(image, channel_order="RGB"):
    """Contrast-limited adaptive histogram equalisation of the lightness (L of CIE Lab; clip 2, 8x8 tiles).

    Args:
        image: ``uint8`` ``(H, W, 3)``.
        channel_order: ``"RGB"`` or ``"BGR"``, the order of ``image`` (kept in the result).
    """
    _check_hwc3(image)
    to_lab, from_lab = ((cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB) if channel_order == "RGB"
                        else (cv2.COLOR_BGR2LAB, cv2.COLOR_LAB2BGR))
    lab = cv2.cvtColor(np.ascontiguousarray(image), to_lab)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, from_lab)


def enhance_graham(image):
    """Local mean colour subtracted: ``4 * (image - blur) + 128`` (blur: Gaussian, sigma = side / 30).

    The outside of the fundus (pixels whose brightest channel is at most 12, eroded by 5x5)
    becomes 128, the middle of the range, so the black border leaves no bright ring.
    """
    _check_hwc3(image)
    image = np.ascontiguousarray(image)
    blur = cv2.GaussianBlur(image, (0, 0), max(image.shape[:2]) / 30.0)
    out = cv2.addWeighted(image, 4.0, blur, -4.0, 128.0)
    inside = cv2.erode((image.max(axis=2) > 12).astype(np.uint8), np.ones((5, 5), np.uint8))
    out[inside == 0] = 128
    return out


def enhance_for(method, image):
    """The enhancement of preprocessing ``method`` applied to its resized image (the image itself when none)."""
    enhancement = enhancement_of(method)
    if enhancement == "clahe":
        return enhance_clahe(image, "BGR" if base_method(method) == "A" else "RGB")
    if enhancement == "graham":
        return enhance_graham(image)
    return image


# --------------------------------------------------------------------------- shared


def resize_for(method, image_bgr, size):
    """The resize step of preprocessing ``method`` (``uint8`` ``size x size x 3``; BGR for A, RGB for B).

    It includes the method's enhancement, if any.
    """
    resized = resize_a(image_bgr, size) if base_method(method) == "A" else resize_b(image_bgr, size)
    return enhance_for(method, resized)


def read_resized(path, method, size):
    """Decode the image file ``path`` and run the resize step of ``method`` on it, as a dataset does.

    Preprocessing A decodes with OpenCV (exactly ``cv2.imread``, as the course's readers), B with
    Pillow (as seed 004).  Returns ``uint8`` ``(size, size, 3)``, enhanced if ``method`` says so.
    """
    if base_method(method) == "A":
        return enhance_for(method, resize_a(read_image(path), size))
    return enhance_for(method, resize_b(read_image_rgb_pil(path), size))


def normalize_for(method, image_hwc):
    """The normalisation step of preprocessing ``method`` (``float32`` CHW)."""
    return normalize_a(image_hwc) if base_method(method) == "A" else normalize_b(image_hwc)


def preprocess_image(image_bgr, size=224, method="A"):
    """Preprocess one decoded image for a model, without augmentation (prediction, evaluation).

    Args:
        image_bgr: ``uint8`` ``(H, W, 3)`` BGR array, as from :func:`paddle_palm.data.read_image`.
        size: output side length.
        method: ``"A"`` (SPEC 1.3) or ``"B"`` (SPEC 1.4), optionally with an enhancement (``"B+clahe"``).

    Returns:
        numpy.ndarray: ``float32`` ``(3, size, size)``.
    """
    return normalize_for(method, resize_for(method, image_bgr, size))


@dataclass(frozen=True)
class Augmentation:
    """Random training augmentation of a ``uint8`` ``(H, W, 3)`` image, driven by a given generator.

    The defaults are seed 004's: a horizontal and a vertical flip, each with probability 0.5.
    Fundus photographs keep their meaning under flips (left and right eyes mirror each other).

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        max_rotation: rotate by a uniform angle in [-max_rotation, max_rotation] degrees about the
            centre, filling with black (0 disables).
        scale: zoom about the centre by a uniform factor in [1 - scale, 1 + scale] (0 disables), in
            the same resampling as the rotation: above 1 crops the rim, below 1 adds black around the
            fundus.  Fundus cameras and eyes differ in how large the disc and macula appear.
        brightness: multiply by a uniform factor in [1 - brightness, 1 + brightness] (0 disables).
        contrast: scale deviations from the mean by a uniform factor in [1 - contrast, 1 + contrast].
        saturation: scale each pixel's deviation from its grey (the mean of its channels) by a
            uniform factor in [1 - saturation, 1 + saturation] (0 disables).
        hue: turn the colours about the grey axis by a uniform angle in [-hue, hue] of a full turn
            (at most 0.5, as paddle.vision's ``ColorJitter``; 0 disables).  The grey axis is the
            same in RGB and BGR order and the angle's range is symmetric, so the augmentation does
            not depend on the channel order.  Fundus cameras differ in colour cast and saturation.
    """

    hflip: float = 0.5
    vflip: float = 0.5
    max_rotation: float = 0.0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self):
        for name in ("hflip", "vflip"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augmentation {name} must be a probability in [0, 1], got {value}")
        for name in ("max_rotation", "scale", "brightness", "contrast", "saturation", "hue"):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ConfigError(f"augmentation {name} must be >= 0, got {value}")
        if self.brightness >= 1.0 or self.contrast >= 1.0 or self.scale >= 1.0:
            raise ConfigError("augmentation scale, brightness and contrast must be < 1")
        if self.saturation > 1.0:
            raise ConfigError(f"augmentation saturation must be at most 1, got {self.saturation}")
        if self.hue > 0.5:
            raise ConfigError(f"augmentation hue must be at most 0.5 (half a turn), got {self.hue}")

    def __call__(self, image, rng):
        """Return an augmented copy of ``image`` (``uint8`` ``(H, W, 3)``); ``rng`` draws the randomness."""
        _check_hwc3(image)
        out = image
        if rng.uniform(0.0, 1.0) < self.hflip:
            out = out[:, ::-1]
        if rng.uniform(0.0, 1.0) < self.vflip:
            out = out[::-1]
        out = np.ascontiguousarray(out)
        if self.max_rotation > 0 or self.scale > 0:
            # Each random draw only when its option is on, so older settings keep their streams.
            angle = rng.uniform(-self.max_rotation, self.max_rotation) if self.max_rotation > 0 else 0.0
            zoom = rng.uniform(1 - self.scale, 1 + self.scale) if self.scale > 0 else 1.0
            h, w = out.shape[:2]
            matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, zoom)
            out = cv2.warpAffine(out, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if self.brightness > 0 or self.contrast > 0 or self.saturation > 0 or self.hue > 0:
            img = out.astype(np.float32)
            if self.contrast > 0:
                mean = img.mean()
                img = (img - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
            if self.brightness > 0:
                img = img * rng.uniform(1 - self.brightness, 1 + self.brightness)
            if self.saturation > 0:
                grey = img.mean(axis=2, keepdims=True)
                img = (img - grey) * rng.uniform(1 - self.saturation, 1 + self.saturation) + grey
            if self.hue > 0:
                img = img @ _grey_axis_rotation(rng.uniform(-self.hue, self.hue) * 2.0 * np.pi).T
            out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return out


def _grey_axis_rotation(angle):
    """The 3x3 rotation by ``angle`` radians about the grey axis (1, 1, 1): a hue shift that keeps grey grey."""
    c, s = np.cos(angle), np.sin(angle)
    k = np.float32(1.0 / 3.0)
    root = np.float32(np.sqrt(1.0 / 3.0))
    # Rodrigues' formula with the unit axis (1, 1, 1) / sqrt(3).
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], np.float32) * root
    return (np.float32(c) * np.eye(3, dtype=np.float32) + np.float32(s) * cross
            + np.float32(1.0 - c) * np.full((3, 3), k, np.float32))


def make_augmentation(augment):
    """Turn a dataset's ``augment`` argument into an :class:`Augmentation` or None.

    Args:
        augment: False/None (none), True (the default :class:`Augmentation`), a dict of its
            fields, or an :class:`Augmentation`.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        return Augmentation()
    if isinstance(augment, Augmentation):
        return augment
    if isinstance(augment, dict):
        try:
            return Augmentation(**augment)
        except TypeError as exc:
            raise ConfigError(f"bad augmentation settings {augment!r}: {exc}") from None
    raise ConfigError(f"augment must be a bool, a dict or an Augmentation, got {augment!r}")
