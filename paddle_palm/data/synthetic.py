"""A small synthetic fundus dataset folder, for tests, demos and ``tools/train.py`` out of the box.

:func:`make_synthetic_palm` writes a dataset folder in the layout of SPEC 5
(:mod:`paddle_palm.data.layout`): ``H*/N*/P*.jpg`` training images,
``V0001.jpg ...`` validation images, ``labels.csv`` and
``PM_Label_and_Fovea_Location.xlsx`` with the columns of SPEC 1.2.  It stands in
for the real iChallenge-PM data, which cannot be shipped.

The images imitate colour fundus photographs: a dark background around a round
orange-red fundus with a vignette and a mottled texture, a pale optic disc with
a bright cup, a darker macula, and vessels branching from the disc in arcades.
What separates the classes is what separates them in the real data:

* ``P`` (pathologic myopia, label 1): large pale peripapillary atrophy around the
  disc and one to three pale chorioretinal atrophy patches with pigmented rims
  near the macula, on a tessellated ("tigroid") background;
* ``H`` (high myopia, label 0): a tessellated background and a small, faint
  temporal crescent at the disc, but no atrophy patches;
* ``N`` (normal, label 0): none of these.

The atrophy covers a large area with high contrast, so a small CNN learns the
task within a few epochs at 64-128 pixels.  The training mix follows the real
one's shape (about half ``P``, an eighth ``H``); about half of the validation
images are positive.

Everything is deterministic: the same arguments give byte-identical files (each
image has its own generator seeded from ``(seed, split, index)``, JPEGs are
encoded by OpenCV at a fixed quality, and the xlsx is written with fixed
timestamps).  A stamp file makes a second call with the same arguments return at
once.
"""

import datetime
import io
import json
import math
import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from paddle_palm.data.archives import remove_abandoned_work_folders
from paddle_palm.data.labels import labels_to_csv, read_labels
from paddle_palm.data.layout import GT_DIR, LABEL_COLUMNS, LABELS_CSV, LABELS_XLSX, TRAIN_DIR, VALID_DIR
from paddle_palm.errors import ConfigError, DataError
from paddle_palm.fileio import write_text_atomic

#: Bumped whenever the images change, so that old stamps no longer match.
GENERATOR_VERSION = 1
#: Stamp file written into the dataset folder when it is complete.
STAMP_NAME = ".synthetic_palm.json"
#: JPEG quality of the written images.
JPEG_QUALITY = 92
_FIXED_TIME = datetime.datetime(2020, 1, 1)
_ENTRIES = (TRAIN_DIR, VALID_DIR, GT_DIR, LABELS_CSV)
_SPLIT_IDS = {"train": 0, "valid": 1}
_TMP_PREFIX = ".synthetic-"


# --------------------------------------------------------------------------- drawing


def _smooth_noise(rng, size, cells):
    """Low-frequency noise in [-1, 1]: a small random grid upsampled with bicubic interpolation."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _blend(image, colour, weight):
    """Blend ``colour`` into ``image`` (in place) with the (H, W) ``weight`` map in [0, 1]; return it.

    Only the bounding box of the non-negligible weights is touched, which keeps small patches cheap.
    """
    mask = weight > 0.002
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return image
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    w = np.clip(weight[box], 0.0, 1.0)[:, :, None]
    region = image[box]
    image[box] = region + (np.asarray(colour, dtype=np.float32) - region) * w
    return image


def _soft_disc(dist, radius, edge):
    """1 inside ``radius``, 0 outside, with a smooth edge ``edge`` wide."""
    return 1.0 / (1.0 + np.exp(np.clip((dist - radius) / max(edge, 1e-3), -60.0, 60.0)))


def _vessel_tree(rng, size, start, direction, length, width, bend, depth, mask, radius, centre):
    """Draw one vessel as a bending random walk, with a few thinner branches."""
    x, y = start
    theta = direction
    step = max(1.5, size / 90.0)
    n_steps = int(length / step)
    points = [(x, y)]
    for i in range(n_steps):
        theta += bend + rng.normal(0.0, 0.06)
        x += step * math.cos(theta)
        y += step * math.sin(theta)
        if math.hypot(x - centre[0], y - centre[1]) > radius * 0.98:
            break
        points.append((x, y))
        if depth > 0 and i > 4 and rng.uniform() < 0.05:
            side = 1.0 if rng.uniform() < 0.5 else -1.0
            _vessel_tree(rng, size, (x, y), theta + side * rng.uniform(0.4, 0.9), length * rng.uniform(0.3, 0.5),
                         max(1.0, width * 0.6), bend * 0.5, depth - 1, mask, radius, centre)
    if len(points) < 2:
        return
    pts = np.round(np.array(points) * 16).astype(np.int32)  # 4 fractional bits for LINE_AA
    for k in range(len(pts) - 1):
        taper = 1.0 - 0.5 * k / max(len(pts) - 1, 1)
        thickness = max(1, int(round(width * taper)))
        cv2.line(mask, tuple(int(v) for v in pts[k]), tuple(int(v) for v in pts[k + 1]), 255, thickness,
                 cv2.LINE_AA, 4)


class _Eye(NamedTuple):
    """Where things are in one synthetic photograph (pixels), and each pixel's distance to them."""

    size: int
    yy: np.ndarray
    xx: np.ndarray
    radius: float  # of the round field of view
    centre: tuple
    disc: tuple  # optic disc centre
    r_disc: float
    fovea: tuple
    towards_fovea: float  # direction from the disc to the fovea, radians
    dist_centre: np.ndarray  # in field-of-view radii
    dist_disc: np.ndarray
    dist_fovea: np.ndarray


def _eye_geometry(rng, size):
    """The field of view, a right or left eye's disc and fovea, slightly jittered."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = 0.46 * s * (1.0 + rng.uniform(-0.03, 0.03))
    cx, cy = s / 2 + rng.uniform(-0.02, 0.02) * s, s / 2 + rng.uniform(-0.02, 0.02) * s
    side = 1.0 if rng.uniform() < 0.5 else -1.0  # right or left eye: disc on the right or the left
    disc = (cx + side * 0.40 * radius, cy + rng.uniform(-0.08, 0.08) * radius)
    fovea = (cx - side * 0.12 * radius + rng.uniform(-0.03, 0.03) * radius,
             cy + rng.uniform(0.0, 0.08) * radius)
    r_disc = 0.15 * radius * (1.0 + rng.uniform(-0.1, 0.1))
    return _Eye(size, yy, xx, radius, (cx, cy), disc, r_disc, fovea,
                math.atan2(fovea[1] - disc[1], fovea[0] - disc[0]),
                np.hypot(xx - cx, yy - cy) / radius, np.hypot(xx - disc[0], yy - disc[1]),
                np.hypot(xx - fovea[0], yy - fovea[1]))


def _background(rng, eye, prefix):
    """Orange-red with a vignette and mottling; tessellation in myopia; the darker macula."""
    size, s = eye.size, float(eye.size)
    base = np.array([28, 62, 168], dtype=np.float32) * (1.0 + rng.uniform(-0.12, 0.12, size=3)).astype(np.float32)
    shade = (1.0 - 0.45 * eye.dist_centre ** 2) * (1.0 + 0.08 * _smooth_noise(rng, size, 7))
    image = np.ascontiguousarray(base[None, None, :] * shade[:, :, None], dtype=np.float32)

    # Tessellation (visible choroidal vessels) in high and pathologic myopia (both draws are made for every class).
    tess = {"N": 0.0, "H": rng.uniform(0.10, 0.16), "P": rng.uniform(0.14, 0.22)}[prefix]
    if tess > 0:
        stripes = np.abs(_smooth_noise(rng, size, 18)) < 0.18
        image = image * (1.0 - tess * cv2.GaussianBlur(stripes.astype(np.float32), (0, 0), s / 200.0)[:, :, None])

    # Macula: a darker, browner spot around the fovea.
    return image * (1.0 - 0.35 * np.exp(-(eye.dist_fovea / (0.13 * eye.radius)) ** 2))[:, :, None]


def _atrophy_patches(rng, image, eye, pale):
    """Patchy chorioretinal atrophy near the macula, with pigmented rims (drawn into ``image``)."""
    size, radius, fovea = eye.size, eye.radius, eye.fovea
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(0.05, 0.30) * radius
        px, py = fovea[0] + d * math.cos(a), fovea[1] + d * math.sin(a)
        pr = rng.uniform(0.07, 0.14) * radius
        squash = rng.uniform(0.7, 1.3)
        ragged = 1.0 + 0.2 * _smooth_noise(rng, size, 9)
        half = int(2.0 * pr / min(squash, 1.0)) + 2
        window = (slice(max(0, int(py) - half), max(0, min(size, int(py) + half + 1))),
                  slice(max(0, int(px) - half), max(0, min(size, int(px) + half + 1))))
        dist_patch = np.hypot(eye.xx[window] - px, (eye.yy[window] - py) * squash) * ragged[window]
        rim = _soft_disc(dist_patch, pr * 1.15, pr * 0.06) - _soft_disc(dist_patch, pr, pr * 0.06)
        _blend(image[window], (20, 25, 40), 0.6 * rim)
        _blend(image[window], pale * 1.05, 0.85 * _soft_disc(dist_patch, pr, pr * 0.08))


def _myopic_changes(rng, image, eye, prefix):
    """A faint temporal crescent (H); peripapillary and patchy atrophy (P)."""
    pale = np.array([150, 205, 238], dtype=np.float32)
    angle = np.arctan2(eye.yy - eye.disc[1], eye.xx - eye.disc[0])
    temporal = np.cos(angle - eye.towards_fovea)  # 1 on the side facing the fovea
    r_disc = eye.r_disc
    if prefix == "H":
        # A small, faint temporal crescent at the disc edge.
        reach = r_disc * (1.0 + 0.25 * np.clip(temporal, 0.0, None))
        image = _blend(image, pale, 0.35 * _soft_disc(eye.dist_disc, reach, r_disc * 0.08))
    if prefix == "P":
        # Peripapillary atrophy: a large pale zone around the disc, widest towards the fovea.
        wobble = 1.0 + 0.15 * _smooth_noise(rng, eye.size, 5)
        reach = r_disc * (rng.uniform(1.7, 2.2) + rng.uniform(0.6, 1.0) * np.clip(temporal, 0.0, None)) * wobble
        image = _blend(image, pale, rng.uniform(0.7, 0.85) * _soft_disc(eye.dist_disc, reach, r_disc * 0.12))
        _atrophy_patches(rng, image, eye, pale)
    return image


def _disc_and_vessels(rng, image, eye):
    """The optic disc with a brighter cup; four dark-red arcades leaving it (two temporal around the macula)."""
    r_disc = eye.r_disc
    image = _blend(image, (110, 185, 240), _soft_disc(eye.dist_disc, r_disc, r_disc * 0.08))
    image = _blend(image, (200, 232, 252), 0.9 * _soft_disc(eye.dist_disc, 0.4 * r_disc, r_disc * 0.08))
    size, radius = eye.size, eye.radius
    mask = np.zeros((size, size), dtype=np.uint8)
    width = max(1.0, float(size) / 110.0)
    for vertical in (-1.0, 1.0):
        start_t = eye.towards_fovea + vertical * rng.uniform(1.1, 1.4)
        _vessel_tree(rng, size, eye.disc, start_t, radius * 1.4, width, -vertical * 0.018, 2, mask, radius, eye.centre)
        start_n = eye.towards_fovea + math.pi - vertical * rng.uniform(0.5, 0.9)
        _vessel_tree(rng, size, eye.disc, start_n, radius * 0.9, width * 0.8, vertical * 0.02, 1, mask, radius,
                     eye.centre)
    return _blend(image, (30, 35, 115), 0.75 * mask.astype(np.float32) / 255.0)


def _camera(rng, image, eye):
    """Slight blur, sensor noise, black outside the round field of view; ``uint8``."""
    image = cv2.GaussianBlur(image, (0, 0), max(0.5, float(eye.size) / 400.0))
    image = image + np.float32(2.5) * rng.standard_normal(size=image.shape, dtype=np.float32)
    image = image * _soft_disc(eye.dist_centre * eye.radius, eye.radius, 1.0)[:, :, None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_fundus(rng, size, prefix):
    """Draw one synthetic fundus photograph.

    Args:
        rng: ``numpy.random.Generator`` that draws every random choice.
        size: side of the square image in pixels.
        prefix: ``"N"`` (normal), ``"H"`` (high myopia) or ``"P"`` (pathologic myopia).

    Returns:
        tuple: ``(image, (fovea_x, fovea_y))``: BGR ``uint8`` ``(size, size, 3)`` and the
        fovea's position in pixels.
    """
    if prefix not in ("N", "H", "P"):
        raise ConfigError(f"unknown class prefix {prefix!r}; expected N, H or P")
    eye = _eye_geometry(rng, size)
    image = _background(rng, eye, prefix)
    image = _myopic_changes(rng, image, eye, prefix)
    image = _disc_and_vessels(rng, image, eye)
    return _camera(rng, image, eye), eye.fovea


# --------------------------------------------------------------------------- the dataset folder


def class_mix(n_train):
    """Numbers of ``(H, N, P)`` training images: about 1/8 H, 1/2 P, the rest N (PALM: 26/161/213)."""
    n_p = n_train // 2
    n_h = max(1, n_train // 8) if n_train >= 4 else 0
    return n_h, n_train - n_p - n_h, n_p


def _encode_jpeg(image, path):
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise DataError(f"cannot encode {path} as JPEG")
    path.write_bytes(data.tobytes())


def _write_xlsx_deterministic(rows, path):
    """Write the label sheet with openpyxl, then fix every timestamp so the bytes repeat."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(list(LABEL_COLUMNS))
    for row in rows:
        sheet.append(list(row))
    workbook.properties.created = _FIXED_TIME
    workbook.properties.modified = _FIXED_TIME
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).save()
    fixed = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=_FIXED_TIME.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            dst.writestr(member, src.read(info.filename))
    path.write_bytes(fixed.getvalue())


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _stamp(n_train, n_valid, image_size, seed):
    return {"generator_version": GENERATOR_VERSION, "n_train": n_train, "n_valid": n_valid,
            "image_size": image_size, "seed": seed}


def _is_complete(out_dir, stamp):
    try:
        found = json.loads((out_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(found, dict) or {k: found.get(k) for k in stamp} != stamp:
        return False
    return all((out_dir / name).is_file() for name in found.get("files", [])) and bool(found.get("files"))


def make_synthetic_palm(out_dir, n_train=48, n_valid=24, image_size=256, seed=0):
    """Write a synthetic PALM-like dataset folder (SPEC 5 layout) and return its path.

    Args:
        out_dir: the folder to write (created if needed).  If it already holds a complete set
            made with the same arguments, it is returned untouched.  A set made with other
            arguments is replaced; a folder holding a dataset not made by this function is refused.
        n_train: training images (>= 2), split H/N/P as :func:`class_mix` says.
        n_valid: validation images (>= 1), about half of them positive.
        image_size: side of the square images (>= 32).
        seed: seed of every random choice; the same arguments give byte-identical files.

    Returns:
        pathlib.Path: ``out_dir``, holding ``PALM-Training400/``, ``PALM-Validation400/``,
        ``PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx`` and ``labels.csv``, a copy of
        ``labels.csv`` at the top, and the stamp file.

    Raises:
        ConfigError: a count, size or seed out of range.
        DataError: ``out_dir`` holds a dataset folder that this function did not make.
    """
    n_train = _check_count("n_train", n_train, 2)
    n_valid = _check_count("n_valid", n_valid, 1)
    image_size = _check_count("image_size", image_size, 32)
    seed = _check_count("seed", seed, 0)
    out_dir = Path(out_dir)
    stamp = _stamp(n_train, n_valid, image_size, seed)
    if _is_complete(out_dir, stamp):
        return out_dir
    if out_dir.exists() and not (out_dir / STAMP_NAME).exists():
        ours = [name for name in _ENTRIES if (out_dir / name).exists()]
        if ours:
            raise DataError(f"{out_dir} already holds {ours[0]} that make_synthetic_palm did not write; "
                            f"choose an empty or new folder for the synthetic data")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work_folders(out_dir, _TMP_PREFIX)
    tmp = out_dir / f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        files = _write_dataset(tmp, n_train, n_valid, image_size, seed)
        (out_dir / STAMP_NAME).unlink(missing_ok=True)
        old = tmp / "_replaced"
        old.mkdir()
        for entry in _ENTRIES:
            target = out_dir / entry
            if target.exists():
                os.replace(target, old / entry)
            os.replace(tmp / entry, target)
        write_text_atomic(out_dir / STAMP_NAME, json.dumps(dict(stamp, files=files), indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_dataset(root, n_train, n_valid, image_size, seed):
    files = []
    train_dir = root / TRAIN_DIR
    train_dir.mkdir()
    n_h, n_n, n_p = class_mix(n_train)
    index = 0
    for prefix, count in (("H", n_h), ("N", n_n), ("P", n_p)):
        for k in range(1, count + 1):
            rng = np.random.default_rng([seed, _SPLIT_IDS["train"], index])
            image, _ = render_fundus(rng, image_size, prefix)
            name = f"{prefix}{k:04d}.jpg"
            _encode_jpeg(image, train_dir / name)
            files.append(f"{TRAIN_DIR}/{name}")
            index += 1

    valid_dir = root / VALID_DIR
    valid_dir.mkdir()
    order_rng = np.random.default_rng([seed, _SPLIT_IDS["valid"], 1 << 20])
    positive = np.zeros(n_valid, dtype=bool)
    positive[order_rng.permutation(n_valid)[: (n_valid + 1) // 2]] = True
    rows = []
    for k in range(n_valid):
        rng = np.random.default_rng([seed, _SPLIT_IDS["valid"], k])
        prefix = "P" if positive[k] else ("H" if rng.uniform() < 0.25 else "N")
        image, (fx, fy) = render_fundus(rng, image_size, prefix)
        name = f"V{k + 1:04d}.jpg"
        _encode_jpeg(image, valid_dir / name)
        files.append(f"{VALID_DIR}/{name}")
        rows.append((k + 1, name, int(positive[k]), round(fx, 2), round(fy, 2)))

    gt_dir = root / GT_DIR
    gt_dir.mkdir()
    _write_xlsx_deterministic(rows, gt_dir / LABELS_XLSX)
    labels_to_csv(read_labels(gt_dir / LABELS_XLSX), gt_dir / LABELS_CSV)  # as prepare_palm converts it
    shutil.copyfile(gt_dir / LABELS_CSV, root / LABELS_CSV)
    files += [f"{GT_DIR}/{LABELS_XLSX}", f"{GT_DIR}/{LABELS_CSV}", LABELS_CSV]
    return files
