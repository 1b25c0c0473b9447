"""The bad-input table: every command-line tool, fed what users really feed it (issue 7).

Each row of :data:`CASES` runs one tool as a user does (``python tools/X.py ...``
from the repository root, in a subprocess) on one bad input, and checks the four
promises the project makes about bad input:

1. the exit code is not zero (2 for a bad option, caught by argparse);
2. standard error holds ONE line that names the file or value and says what was
   expected (each row lists the words it must contain), and no ``Traceback``;
3. the output folder is as it was: no file changed, none half-written.  A tool
   that fails after it legitimately started its output folder (a training that
   stops on a NaN loss) may leave new files, but each must be complete (a
   checkpoint loads, a csv parses, no temporary or pending file, no lock);
4. nothing is written outside the chosen output folder: the inputs are not
   touched, no file appears beside them (zip-slip), the temporary folder is left
   empty and no run folder appears in the repository.

Every row works in its own folder ``<case>/`` holding ``in/`` (the inputs),
``out/`` (the output folder) and ``tmp/`` (``TMPDIR`` of the tool).  The data are
tiny: a synthetic dataset folder of 12 + 6 images, a SqueezeNet 1.1 checkpoint
trained one epoch at 32 px, archives built from them.  The rows run two at a
time to keep the module within its time budget.

What is accepted and converted instead of refused (grayscale, RGBA, 16-bit,
CMYK, palette and PNG images) is checked by :func:`test_accepted_images_predict`.
"""

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CASE_TIMEOUT = 60


# --------------------------------------------------------------------------- running a tool


@dataclasses.dataclass
class Result:
    """What a tool run left behind."""

    argv: list
    code: int
    stdout: str
    stderr: str
    before: dict  # snapshot of the case folder before the run
    after: dict
    out: Path
    case_dir: Path
    repo_before: set
    repo_after: set
    seconds: float
    note: str = ""


def tool_env(case_dir):
    env = dict(os.environ)
    tmp = case_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)  # the tools must find the package on their own (sys.path insert)
    return env


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(folder):
    """``{relative path: sha256 or '<dir>'}`` of everything under ``folder``."""
    folder = Path(folder)
    out = {}
    if not folder.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, folder)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel_dir, name))] = "<dir>"
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                value = "<link>"
            elif name == "train.log":  # kept whole, to check that a failed run only appended to it
                value = "log:" + Path(path).read_text(encoding="utf-8", errors="replace")
            else:
                value = digest(path)
            out[os.path.normpath(os.path.join(rel_dir, name))] = value
    return out


def repo_outputs():
    """Output-like files at the top of the repository and in ``tools/``, and the default run folders.

    A tool that ignored its output options would write there (``runs/<arch>-<time>`` is the
    default of ``tools/train.py``).  Other processes writing there at the same time (another
    training started by hand without --output-dir) would make a row fail.
    """
    found = set()
    for folder in (ROOT, ROOT / "tools"):
        for entry in folder.iterdir():
            if entry.is_file() and entry.suffix.lower() in (".pdparams", ".pdopt", ".pdstates", ".pdema", ".png",
                                                            ".csv", ".log", ".jpg", ".lock", ".zip"):
                found.add(str(entry.relative_to(ROOT)))
    for name in ("runs", "output", "outputs", "inference_model"):
        if (ROOT / name).exists():
            found.update(str(p.relative_to(ROOT)) for p in (ROOT / name).iterdir())
    return found


def _text(data):
    return (data or b"").decode("utf-8", errors="replace")


def run_tool(tool, args, case_dir, out, timeout=CASE_TIMEOUT):
    """Run ``python tools/<tool> args`` from the repository root; snapshot around it."""
    argv = [PY, str(Path("tools") / tool), *map(str, args)]
    before = snapshot(case_dir)
    repo_before = repo_outputs()
    started = time.perf_counter()
    try:
        # Bytes, decoded here: text mode would turn the carriage returns of progress bars into newlines.
        proc = subprocess.run(argv, cwd=ROOT, env=tool_env(case_dir), capture_output=True, timeout=timeout)
        code, stdout, stderr = proc.returncode, _text(proc.stdout), _text(proc.stderr)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        code, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr)
    seconds = time.perf_counter() - started
    return Result(argv, code, stdout, stderr, before, snapshot(case_dir), Path(out), case_dir,
                  repo_before, repo_outputs(), seconds)


# --------------------------------------------------------------------------- checking a result

# Lines that are not the tool's own output: Python warnings (two lines each) raised while importing
# third-party packages.  Anything else on stderr besides the error line fails the "one line" rule.
_WARNING_LINE = re.compile(r"^\S.*:\d+: \w*Warning: ")


def _render(line):
    """What a terminal shows for one line: each carriage return starts overwriting from column 0."""
    shown = []
    for segment in line.split("\r"):
        shown[: len(segment)] = segment
    return "".join(shown)


def stderr_lines(text):
    """The visible, non-empty lines of stderr, without Python warnings (progress bars that clear
    themselves with a carriage return leave nothing, as on a terminal)."""
    lines = [_render(line) for line in text.split("\n")]
    kept, skip_next = [], False
    for line in lines:
        if skip_next and line.startswith((" ", "\t")):
            skip_next = False
            continue
        skip_next = False
        if _WARNING_LINE.match(line):
            skip_next = True
            continue
        if line.strip():
            kept.append(line.rstrip())
    return kept


def _is_temporary(name):
    base = os.path.basename(name)
    return base.endswith((".tmp", ".pending", ".part", ".partial")) or base.startswith((".tmp", "tmp")) or \
        base.endswith(".lock") or base.startswith(".prepare_palm-")


def check_complete(path):
    """Raise AssertionError unless ``path`` is a complete file of its kind."""
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix in (".pdparams", ".pdopt", ".pdema"):
        import paddle

        obj = paddle.load(str(path))
        assert isinstance(obj, dict), f"{path} is not a state dict"
    elif suffix in (".pdstates", ".json"):
        json.loads(data.decode("utf-8"))
    elif suffix == ".csv":
        list(csv.reader(io.StringIO(data.decode("utf-8"))))
    elif suffix in (".yaml", ".yml"):
        import yaml

        yaml.safe_load(data.decode("utf-8"))
    elif suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        with Image.open(path) as img:
            img.load()


def check_result(res, case):
    """The four promises of the module docstring, with messages that show what happened."""
    shown = f"\n--- command: {' '.join(res.argv)}\n--- exit {res.code}\n--- stderr:\n{res.stderr[-3000:]}" \
            f"\n--- stdout:\n{res.stdout[-1500:]}"
    # 1. exit code
    assert res.code is not None, f"the tool hung: still running after {res.seconds:.0f} s, killed" + shown
    assert res.code != 0, "the tool succeeded on bad input" + shown
    if case.code is not None:
        assert res.code == case.code, f"exit code {res.code}, expected {case.code}" + shown
    # 2. one line, naming the problem, no traceback
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, "a Python traceback was shown" + shown
    lines = stderr_lines(res.stderr)
    errors = [line for line in lines if re.match(r"^([\w.]+: )?error: ", line)]
    assert len(errors) == 1, f"expected exactly one 'error: ...' line on stderr, found {len(errors)}" + shown
    message = errors[0]
    if case.quiet:
        others = [line for line in lines if line is not message]
        assert not others, f"stderr holds more than the one error line: {others}" + shown
    else:
        assert lines[-1] is message, "the error is not the last line on stderr" + shown
    for pattern in case.expect:
        assert re.search(pattern, message, re.IGNORECASE), f"the message does not match {pattern!r}: {message}" + shown
    # 3. the output folder: nothing changed, nothing half-written
    out_rel = os.path.relpath(res.out, res.case_dir)
    in_out = lambda key: key == out_rel or key.startswith(out_rel + os.sep)  # noqa: E731
    before_out = {k: v for k, v in res.before.items() if in_out(k)}
    after_out = {k: v for k, v in res.after.items() if in_out(k)}
    for key, value in before_out.items():
        assert key in after_out, f"{key} was removed from the output folder" + shown
        if after_out[key] != value:
            appended = value.startswith("log:") and after_out[key].startswith(value)
            assert appended and case.allow_log_append, f"{key} was changed" + shown
    new = sorted(k for k in after_out if k not in before_out)
    for key in new:
        assert not _is_temporary(key), f"left behind in the output folder: {key}" + shown
    if not case.allow_new:
        new_files = [k for k in new if after_out[k] != "<dir>"]
        assert not new_files, f"files created by a failed run: {new_files}" + shown
    for key in new:
        if after_out[key] not in ("<dir>", "<link>"):
            try:
                check_complete(res.case_dir / key)
            except Exception as exc:  # noqa: BLE001 - any failure to load means half-written
                raise AssertionError(f"{key} is not a complete file: {exc!r}" + shown) from None
    # 4. nothing outside the output folder
    outside_before = {k: v for k, v in res.before.items() if not in_out(k) and not k.startswith("tmp")}
    outside_after = {k: v for k, v in res.after.items() if not in_out(k) and not k.startswith("tmp")}
    assert outside_after == outside_before, (
        f"written outside the output folder: added {sorted(set(outside_after) - set(outside_before))}, "
        f"changed {sorted(k for k in outside_before if outside_after.get(k) not in (None, outside_before[k]))}, "
        f"removed {sorted(set(outside_before) - set(outside_after))}" + shown)
    leftovers = [k for k in res.after if k.startswith("tmp" + os.sep)]
    assert not leftovers, f"temporary files left in TMPDIR: {leftovers}" + shown
    appeared = sorted(res.repo_after - res.repo_before)
    assert not appeared, f"files appeared in the repository: {appeared}" + shown
    return message


# --------------------------------------------------------------------------- inputs


def encode(image, ext=".jpg"):
    import cv2

    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def fundus_like(size=40, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 2.2) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (40, 70, 190)
    return np.clip(img.astype(int) + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def png_bomb(width, height):
    """A valid 1-bit grayscale PNG of ``width x height`` pixels, all black, a few kB on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(comp.compress(row * (height % 1000)))
    parts.append(comp.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def odd_images():
    """Image files of every kind the policy of :mod:`paddle_palm.data.images` names, as bytes."""
    from PIL import Image

    colour = fundus_like(40)
    good = encode(colour)

    def pil_bytes(img, fmt):
        buf = io.BytesIO()
        img.save(buf, fmt)
        return buf.getvalue()

    rgb = Image.fromarray(colour[:, :, ::-1].copy())
    return {
        # accepted and converted
        "gray.jpg": encode(colour[:, :, 1]),
        "rgba.png": encode(np.dstack([colour, np.full(colour.shape[:2], 200, np.uint8)]), ".png"),
        "deep16.png": encode(colour.astype(np.uint16) * 257, ".png"),
        "cmyk.jpg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "colour.png": encode(colour, ".png"),
        "palette.png": pil_bytes(rgb.convert("P"), "PNG"),
        "png-named.jpg": encode(colour, ".png"),
        "colour.bmp": encode(colour, ".bmp"),
        # refused
        "zero.jpg": b"",
        "truncated.jpg": good[: len(good) // 2],
        "text.jpg": b"this is not an image\n",
        "bomb.png": png_bomb(10_050, 10_000),
        "good.jpg": good,
    }


ACCEPTED = ("gray.jpg", "rgba.png", "deep16.png", "cmyk.jpg", "colour.png", "palette.png", "png-named.jpg",
            "colour.bmp")


def zip_bytes(members):
    """A zip archive holding ``{name: bytes}`` (names stored exactly as given)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def sheet_xlsx(rows, header=("ID", "imgName", "Label", "Fovea_X", "Fovea_Y")):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def label_rows(names_labels):
    return [(i + 1, name, label, 1157.74, 1019.87) for i, (name, label) in enumerate(names_labels)]


@dataclasses.dataclass
class World:
    """The shared inputs every case starts from (built once per module)."""

    root: Path
    data: Path  # a dataset folder (SPEC 5)
    run: Path  # a finished one-epoch squeezenet1_1 run folder (preprocessing B, two classes)
    se_run: Path  # a finished one-epoch se_resnet18 run folder (preprocessing A, one logit)
    images: dict  # odd_images()
    train_images: dict  # name -> bytes, for archives
    valid_images: dict
    valid_labels: list  # [(name, label)]

    def archives(self, folder, training=None, validation=None, valid_gt=None, nested=None):
        """Write the three PALM archives into ``folder``; each argument replaces one (bytes, or False: absent)."""
        folder.mkdir(parents=True, exist_ok=True)
        if nested is None:
            nested = zip_bytes({f"PALM-Training400/{n}": b for n, b in self.train_images.items()})
        if training is None:
            training = zip_bytes({"PALM-Training400/PALM-Training400.zip": nested,
                                  "PALM-Training400/PALM-Training400-Annotation-D&F.zip": zip_bytes({"README": b"x"})})
        if validation is None:
            validation = zip_bytes({f"PALM-Validation400/{n}": b for n, b in self.valid_images.items()})
        if valid_gt is None:
            valid_gt = zip_bytes({"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx":
                                  sheet_xlsx(label_rows(self.valid_labels))})
        for name, data in (("training.zip", training), ("validation.zip", validation), ("valid_gt.zip", valid_gt)):
            if data is not False:
                (folder / name).write_bytes(data)
        return folder

    def data_copy(self, dest):
        shutil.copytree(self.data, dest)
        return dest

    def run_copy(self, dest, run=None):
        shutil.copytree(run or self.run, dest)
        return dest


TRAIN_ARGS = ["--arch", "squeezenet1_1", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
              "--num-workers", "0", "--no-progress", "--no-visualdl", "--seed", "0"]


def _train_fixture_run(arch, data, out):
    args = list(TRAIN_ARGS)
    args[args.index("--arch") + 1] = arch
    proc = subprocess.run([PY, "tools/train.py", *args, "--data-dir", str(data), "--output-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the fixture training of {arch} failed:\n{proc.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from paddle_palm.data import read_labels
    from paddle_palm.data.synthetic import make_synthetic_palm

    root = tmp_path_factory.mktemp("world")
    data = Path(make_synthetic_palm(root / "data", n_train=12, n_valid=6, image_size=40, seed=0))
    train_dir, valid_dir = data / "PALM-Training400", data / "PALM-Validation400"
    table = read_labels(data / "PALM-Validation-GT" / "labels.csv")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        run = pool.submit(_train_fixture_run, "squeezenet1_1", data, root / "run")
        se_run = pool.submit(_train_fixture_run, "se_resnet18", data, root / "se_run")
        run, se_run = run.result(), se_run.result()
    return World(
        root=root, data=data, run=run, se_run=se_run, images=odd_images(),
        train_images={p.name: p.read_bytes() for p in sorted(train_dir.iterdir())},
        valid_images={p.name: p.read_bytes() for p in sorted(valid_dir.iterdir())},
        valid_labels=list(zip(table["imgName"], table["Label"].astype(int))),
    )


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass
class Case:
    """One row: ``setup(world, case_dir)`` prepares ``in/`` (and maybe ``out/``) and returns the tool's arguments."""

    id: str
    tool: str
    setup: Callable
    expect: tuple  # regular expressions the error line must match (case-insensitive)
    code: int = None  # exact exit code expected (None: any non-zero)
    quiet: bool = True  # stderr holds nothing but the error line
    allow_new: bool = False  # the failed run may leave complete new files in its output folder
    allow_log_append: bool = False  # train.log may grow
    runner: Callable = None  # a custom way to run the case (lock, read-only folder)


CASES = []


def case(id, tool, expect, **kw):
    def register(setup):
        CASES.append(Case(id, tool, setup, tuple(expect), **kw))
        return setup

    return register


# ---- tools/prepare_data.py: archives


def prep(w, d, **archives):
    src = w.archives(d / "in" / "archives", **archives)
    return ["--archives", src, "--out", d / "out"]


def prep_over_existing(w, d, **archives):
    """Like :func:`prep`, into an output folder that already holds a good preparation."""
    from paddle_palm.data import prepare_palm

    good = w.archives(d / "in" / "good")
    prepare_palm(good, d / "out")
    shutil.rmtree(good)
    return prep(w, d, **archives)


@case("prepare-archive-folder-missing", "prepare_data.py", [r"nowhere", r"not found"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    return ["--archives", d / "in" / "nowhere", "--out", d / "out"]


@case("prepare-archive-folder-empty", "prepare_data.py", [r"training\.zip", r"not found|missing"])
def _(w, d):
    (d / "in" / "archives").mkdir(parents=True)
    return ["--archives", d / "in" / "archives", "--out", d / "out"]


@case("prepare-training-zip-zero-bytes", "prepare_data.py", [r"training\.zip", r"empty|0 bytes"])
def _(w, d):
    return prep(w, d, training=b"")


@case("prepare-training-zip-corrupt", "prepare_data.py", [r"training\.zip", r"damaged|not a zip|corrupt"])
def _(w, d):
    return prep_over_existing(w, d, training=os.urandom(3000))


@case("prepare-training-zip-truncated", "prepare_data.py", [r"training\.zip", r"damaged|truncated|not a zip"])
def _(w, d):
    full = zip_bytes({"PALM-Training400/PALM-Training400.zip": zip_bytes(
        {f"PALM-Training400/{n}": b for n, b in w.train_images.items()})})
    return prep(w, d, training=full[: len(full) * 2 // 3])


@case("prepare-training-zip-wrong-content", "prepare_data.py", [r"training\.zip", r"no training images|expected"])
def _(w, d):
    return prep(w, d, training=zip_bytes({"holiday/beach.txt": b"sun", "notes.md": b"# notes"}))


@case("prepare-validation-zip-is-training-zip", "prepare_data.py", [r"validation\.zip|valid_gt\.zip", r"expected|not found"])
def _(w, d):
    # A user renames the wrong download: validation.zip holds the training archive.
    wrong = (w.archives(d / "in" / "tmp-src") / "training.zip").read_bytes()
    shutil.rmtree(d / "in" / "tmp-src")
    return prep(w, d, validation=wrong)


@case("prepare-zip-slip-dotdot", "prepare_data.py", [r"validation\.zip", r"\.\./", r"zip-slip|outside"])
def _(w, d):
    members = {f"PALM-Validation400/{n}": b for n, b in w.valid_images.items()}
    members["PALM-Validation400/../../../evil.jpg"] = w.images["good.jpg"]
    return prep_over_existing(w, d, validation=zip_bytes(members))


@case("prepare-zip-slip-absolute", "prepare_data.py", [r"training\.zip", r"absolute|zip-slip"])
def _(w, d):
    target = (d / "in" / "abs-evil.jpg").resolve()
    nested = zip_bytes({f"PALM-Training400/{n}": b for n, b in w.train_images.items()})
    return prep(w, d, training=zip_bytes({"PALM-Training400/PALM-Training400.zip": nested,
                                          str(target): w.images["good.jpg"]}))


@case("prepare-zip-slip-in-nested-zip", "prepare_data.py", [r"PALM-Training400\.zip", r"zip-slip|outside|absolute"])
def _(w, d):
    members = {f"PALM-Training400/{n}": b for n, b in w.train_images.items()}
    members["PALM-Training400/..\\..\\..\\..\\nested-evil.jpg"] = w.images["good.jpg"]
    return prep(w, d, nested=zip_bytes(members))


@case("prepare-unknown-prefix", "prepare_data.py", [r"X0001\.jpg", r"H.*N.*P"])
def _(w, d):
    members = {f"PALM-Training400/{n}": b for n, b in w.train_images.items()}
    members["PALM-Training400/X0001.jpg"] = w.images["good.jpg"]
    return prep(w, d, nested=zip_bytes(members))


@case("prepare-sheet-without-columns", "prepare_data.py", [r"valid_gt\.zip", r"imgName|Label"])
def _(w, d):
    rows = [(i + 1, n, lab) for i, (n, lab) in enumerate(w.valid_labels)]
    return prep(w, d, valid_gt=zip_bytes({"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx":
                                          sheet_xlsx(rows, header=("ID", "image", "PM"))}))


@case("prepare-label-2", "prepare_data.py", [r"label '?2'?", r"0 or 1"])
def _(w, d):
    labels = list(w.valid_labels)
    labels[1] = (labels[1][0], 2)
    return prep_over_existing(w, d, valid_gt=zip_bytes({
        "PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": sheet_xlsx(label_rows(labels))}))


@case("prepare-label-nan", "prepare_data.py", [r"nan|empty", r"0 or 1"])
def _(w, d):
    labels = list(w.valid_labels)
    labels[2] = (labels[2][0], None)
    return prep(w, d, valid_gt=zip_bytes({
        "PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": sheet_xlsx(label_rows(labels))}))


@case("prepare-sheet-image-absent", "prepare_data.py", [r"V0999\.jpg", r"not found|absent|missing"])
def _(w, d):
    labels = list(w.valid_labels) + [("V0999.jpg", 1)]
    return prep(w, d, valid_gt=zip_bytes({
        "PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": sheet_xlsx(label_rows(labels))}))


@case("prepare-validation-without-labels", "prepare_data.py", [r"valid_gt\.zip", r"not found|missing"])
def _(w, d):
    return prep(w, d, valid_gt=False)


@case("prepare-non-image-member", "prepare_data.py", [r"V0002\.jpg|validation\.zip", r"not a JPEG|not an image|image"])
def _(w, d):
    members = {f"PALM-Validation400/{n}": b for n, b in w.valid_images.items()}
    members["PALM-Validation400/V0002.jpg"] = w.images["text.jpg"]
    return prep(w, d, validation=zip_bytes(members))


@case("prepare-nested-zip-corrupt", "prepare_data.py", [r"PALM-Training400\.zip", r"damaged|not a zip"])
def _(w, d):
    return prep(w, d, nested=os.urandom(2000))


@case("prepare-sheet-not-a-workbook", "prepare_data.py", [r"valid_gt\.zip", r"xlsx|workbook|cannot read"])
def _(w, d):
    return prep(w, d, valid_gt=zip_bytes({"PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx":
                                          zip_bytes({"[Content_Types].xml": b"<not a workbook/>"})}))


@case("prepare-sheet-name-with-path", "prepare_data.py", [r"\.\./V0001\.jpg", r"plain file name"])
def _(w, d):
    labels = list(w.valid_labels)
    labels[0] = ("../" + labels[0][0], labels[0][1])
    return prep(w, d, valid_gt=zip_bytes({
        "PALM-Validation-GT/PM_Label_and_Fovea_Location.xlsx": sheet_xlsx(label_rows(labels))}))


@case("prepare-member-with-empty-name", "prepare_data.py", [r"training\.zip", r"empty|name|damaged"])
def _(w, d):
    nested = zip_bytes({f"PALM-Training400/{n}": b for n, b in w.train_images.items()})
    return prep(w, d, training=zip_bytes({"PALM-Training400/PALM-Training400.zip": nested, "": b"nameless"}))


@case("prepare-symlink-member", "prepare_data.py", [r"validation\.zip", r"symbolic link"])
def _(w, d):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in w.valid_images.items():
            zf.writestr(f"PALM-Validation400/{n}", b)
        link = zipfile.ZipInfo("PALM-Validation400/V0099.jpg")
        link.external_attr = (0o120777 << 16)  # a symbolic link to a file outside the dataset
        zf.writestr(link, "../../../../etc/passwd")
    return prep(w, d, validation=buf.getvalue())


@case("prepare-zip-bomb", "prepare_data.py", [r"training\.zip", r"zip bomb|expands|limit"])
def _(w, d):
    bomb = zipfile.ZipInfo("PALM-Training400/P0666.jpg")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(bomb, b"\xff\xd8\xff" + bytes(40 * 1024 * 1024))  # 40 MB of zeros, ~40 kB packed
    return prep_over_existing(w, d, training=buf.getvalue())


@case("prepare-out-under-a-file", "prepare_data.py", [r"a-file", r"not a directory|cannot create|exists"])
def _(w, d):
    src = w.archives(d / "in" / "archives")
    (d / "out").mkdir(parents=True)
    (d / "out" / "a-file").write_text("x")
    return ["--archives", src, "--out", d / "out" / "a-file" / "dataset"]


# ---- tools/train.py: data


def train_args(d, data, *extra):
    return [*TRAIN_ARGS, "--data-dir", data, "--output-dir", d / "out", *extra]


def data_with(w, d, train=None, remove=(), labels=None):
    """A copy of the dataset folder with training files added/removed or labels.csv replaced."""
    data = w.data_copy(d / "in" / "data")
    for name in remove:
        (data / "PALM-Training400" / name).unlink()
    for name, content in (train or {}).items():
        (data / "PALM-Training400" / name).write_bytes(content)
    if labels is not None:
        for path in (data / "PALM-Validation-GT" / "labels.csv", data / "labels.csv"):
            if path.exists():
                path.write_text(labels)
        xlsx = data / "PALM-Validation-GT" / "PM_Label_and_Fovea_Location.xlsx"
        if xlsx.exists():
            xlsx.unlink()
    return data


def labels_csv(rows, header="ID,imgName,Label,Fovea_X,Fovea_Y"):
    lines = [header] + [",".join(str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


@case("train-data-dir-missing", "train.py", [r"nowhere", r"not found"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    return train_args(d, d / "in" / "nowhere")


@case("train-empty-training-folder", "train.py", [r"PALM-Training400", r"no training images|empty"], allow_new=True)
def _(w, d):
    data = w.data_copy(d / "in" / "data")
    for p in (data / "PALM-Training400").iterdir():
        p.unlink()
    return train_args(d, data)


@case("train-unknown-prefix", "train.py", [r"X0001\.jpg", r"prefix|H.*N.*P"], allow_new=True)
def _(w, d):
    return train_args(d, data_with(w, d, train={"X0001.jpg": w.images["good.jpg"]}))


@case("train-zero-byte-image", "train.py", [r"P0099\.jpg", r"empty|0 bytes"], allow_new=True)
def _(w, d):
    return train_args(d, data_with(w, d, train={"P0099.jpg": b""}))


@case("train-truncated-jpeg", "train.py", [r"P0098\.jpg", r"truncated|damaged"], allow_new=True)
def _(w, d):
    return train_args(d, data_with(w, d, train={"P0098.jpg": w.images["truncated.jpg"]}))


@case("train-non-image-file", "train.py", [r"H0099\.jpg", r"not an image|expected a JPEG"], allow_new=True)
def _(w, d):
    return train_args(d, data_with(w, d, train={"H0099.jpg": w.images["text.jpg"]}))


@case("train-png-damaged-inside", "train.py", [r"P0096\.png", r"damaged|truncated|broken"], allow_new=True)
def _(w, d):
    # The header and the end of the file are intact, so only decoding finds the damage: during the
    # first epoch, inside the data loader.  It must still be one line, not a hang or a traceback.
    data = bytearray(encode(fundus_like(40, seed=3), ".png"))
    data[data.find(b"IDAT") + 200] ^= 0xFF
    return train_args(d, data_with(w, d, train={"P0096.png": bytes(data)}))


@case("train-png-damaged-inside-workers", "train.py", [r"N0096\.png", r"damaged|truncated|broken"],
      allow_new=True, quiet=False)
def _(w, d):
    # The same, decoded in a separate data-loading process (--num-workers 1).
    data = bytearray(encode(fundus_like(40, seed=4), ".png"))
    data[data.find(b"IDAT") + 200] ^= 0xFF
    args = train_args(d, data_with(w, d, train={"N0096.png": bytes(data)}))
    args[args.index("--num-workers") + 1] = "1"
    return args


@case("train-decompression-bomb", "train.py", [r"P0097\.png", r"too large|pixels"], allow_new=True)
def _(w, d):
    return train_args(d, data_with(w, d, train={"P0097.png": w.images["bomb.png"]}))


@case("train-sheet-without-columns", "train.py", [r"labels\.csv", r"imgName"], allow_new=True)
def _(w, d):
    rows = [(i + 1, n, lab) for i, (n, lab) in enumerate(w.valid_labels)]
    return train_args(d, data_with(w, d, labels=labels_csv(rows, header="ID,file,PM")))


@case("train-label-2", "train.py", [r"labels\.csv", r"label '?2'?", r"0 or 1"], allow_new=True)
def _(w, d):
    rows = label_rows(w.valid_labels)
    rows[0] = rows[0][:2] + (2,) + rows[0][3:]
    return train_args(d, data_with(w, d, labels=labels_csv(rows)))


@case("train-label-nan", "train.py", [r"labels\.csv", r"nan|empty", r"0 or 1"], allow_new=True)
def _(w, d):
    rows = label_rows(w.valid_labels)
    rows[1] = rows[1][:2] + ("",) + rows[1][3:]
    return train_args(d, data_with(w, d, labels=labels_csv(rows)))


@case("train-duplicate-rows", "train.py", [r"V0001\.jpg", r"twice|duplicate"], allow_new=True)
def _(w, d):
    rows = label_rows(w.valid_labels)
    rows.append(rows[0])
    return train_args(d, data_with(w, d, labels=labels_csv(rows)))


@case("train-image-in-sheet-absent", "train.py", [r"V0005\.jpg", r"not found"], allow_new=True)
def _(w, d):
    data = data_with(w, d)
    (data / "PALM-Validation400" / "V0005.jpg").unlink()
    return train_args(d, data)


@case("train-labels-file-is-an-image", "train.py", [r"P0001\.jpg", r"label sheet|csv|xlsx"], allow_new=True)
def _(w, d):
    data = w.data_copy(d / "in" / "data")
    return train_args(d, data, "--labels-file", data / "PALM-Training400" / "P0001.jpg")


# ---- tools/train.py: options


@case("train-epochs-0", "train.py", [r"--epochs", r"\b0\b"], code=2)
def _(w, d):
    return train_args(d, w.data) + ["--epochs", "0"]


@case("train-batch-size-negative", "train.py", [r"--batch-size", r"-1"], code=2)
def _(w, d):
    return train_args(d, w.data) + ["--batch-size=-1"]


@case("train-lr-nan", "train.py", [r"--lr", r"nan"], code=2)
def _(w, d):
    return train_args(d, w.data) + ["--lr", "nan"]


@case("train-lr-inf", "train.py", [r"--lr", r"inf"], code=2)
def _(w, d):
    return train_args(d, w.data) + ["--lr", "inf"]


@case("train-image-size-3", "train.py", [r"image.size", r"\b3\b"])
def _(w, d):
    return train_args(d, w.data) + ["--image-size", "3"]


@case("train-num-workers-negative", "train.py", [r"--num-workers", r"-2"], code=2)
def _(w, d):
    return train_args(d, w.data) + ["--num-workers=-2"]


@case("train-unknown-architecture", "train.py", [r"resnet5\b", r"known|did you mean"])
def _(w, d):
    args = train_args(d, w.data)
    args[args.index("--arch") + 1] = "resnet5"
    return args


@case("train-config-bad-value", "train.py", [r"bad\.yaml", r"epochs", r"-3"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    (d / "in" / "bad.yaml").write_text("optimisation:\n  epochs: -3\n")
    args = train_args(d, w.data)
    i = args.index("--epochs")
    del args[i:i + 2]
    return args + ["--config", d / "in" / "bad.yaml"]


@case("train-config-not-yaml", "train.py", [r"photo\.yaml", r"not a valid YAML|mapping|expected"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    (d / "in" / "photo.yaml").write_bytes(w.images["good.jpg"])
    return train_args(d, w.data) + ["--config", d / "in" / "photo.yaml"]


# ---- tools/train.py: run folders


@case("train-resume-empty-folder", "train.py", [r"empty-run", r"nothing to resume|no checkpoint|config\.yaml"])
def _(w, d):
    (d / "in" / "empty-run").mkdir(parents=True)
    (d / "out").mkdir()
    return [*TRAIN_ARGS, "--data-dir", w.data, "--resume", d / "in" / "empty-run"]


@case("train-resume-foreign-folder", "train.py", [r"out", r"nothing to resume|no checkpoint|config\.yaml|expected"])
def _(w, d):
    # The user points --resume at the dataset folder (it has files, none of them a run).
    w.data_copy(d / "out")
    return ["--resume", d / "out", "--epochs", "2"]


@case("train-resume-other-architecture", "train.py", [r"arch", r"squeezenet1_1", r"se_resnet18"])
def _(w, d):
    w.run_copy(d / "out")
    return ["--resume", d / "out", "--arch", "se_resnet18", "--epochs", "2"]


@case("train-resume-damaged-checkpoint", "train.py", [r"latest\.pdparams", r"damaged|digest"], allow_log_append=True)
def _(w, d):
    run = w.run_copy(d / "out")
    data = bytearray((run / "latest.pdparams").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "latest.pdparams").write_bytes(bytes(data))
    return ["--resume", run, "--epochs", "2"]


@case("train-into-existing-run", "train.py", [r"out", r"already holds|--resume"], allow_log_append=True)
def _(w, d):
    w.run_copy(d / "out")
    return train_args(d, w.data)


@case("train-output-folder-under-a-file", "train.py", [r"a-file", r"not a directory|cannot create"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    (d / "in" / "a-file").write_text("x")
    (d / "out").mkdir()
    return [*TRAIN_ARGS, "--data-dir", w.data, "--output-dir", d / "in" / "a-file" / "run"]


@case("train-nan-loss-keeps-last-checkpoint", "train.py", [r"\b(nan|inf)\b", r"lr|learning rate"], quiet=False,
      allow_log_append=True)
def _(w, d):
    # Resume a good one-epoch se_resnet18 run with an absurd learning rate: epoch 2 diverges (the loss
    # overflows) and must stop with a clear message, leaving the run folder as it was.
    w.run_copy(d / "out", w.se_run)
    return ["--resume", d / "out", "--epochs", "2", "--lr", "1e38", "--no-progress"]


@case("train-diverged-weights-not-saved", "train.py", [r"\b(nan|inf)\b|finite|diverg"], quiet=False,
      allow_log_append=True)
def _(w, d):
    # The same with squeezenet1_1: its weights become NaN, but its final ReLU turns NaN into 0, so the
    # loss stays finite (ln 2).  Weights that are not finite must not be saved over the good checkpoint.
    w.run_copy(d / "out")
    return ["--resume", d / "out", "--epochs", "2", "--lr", "1e30", "--no-progress"]


def run_second_training(case, w, d):
    """Start a training, freeze it once it holds the output folder, start a second one into it."""
    data = w.data_copy(d / "in" / "data")
    first = subprocess.Popen([PY, "tools/train.py", *train_args(d, data), "--epochs", "50"], cwd=ROOT,
                             env=tool_env(d / "first"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (d / "out" / "latest.pdstates").exists():  # it holds the lock and has saved epoch 1
            assert first.poll() is None, "the first training ended before it could be observed"
            assert time.monotonic() < deadline, "the first training did not save a checkpoint in time"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # nothing changes in its folder while the second one runs
        res = run_tool("train.py", train_args(d, data), d, d / "out")
    finally:
        first.kill()
        first.wait()
    res.note = "first training frozen with SIGSTOP while the second ran"
    return res


@case("train-two-trainings-same-folder", "train.py", [r"out", r"in use|locked|another training"],
      runner=run_second_training)
def _(w, d):
    return None


def read_only_mount_available():
    """Whether this process can make a read-only bind mount in a private mount namespace."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o ro tmpfs /mnt 2>/dev/null"], capture_output=True)
    return probe.returncode == 0


def run_read_only(case, w, d):
    """A read-only output folder: chmod for a normal user; a read-only bind mount for root."""
    (d / "out").mkdir(parents=True)
    (d / "out" / "notes.txt").write_text("the user's own file\n")
    args = train_args(d, w.data)
    if os.geteuid() != 0:
        os.chmod(d / "out", 0o555)
        try:
            return run_tool("train.py", args, d, d / "out")
        finally:
            os.chmod(d / "out", 0o755)
    if not read_only_mount_available():
        pytest.skip("running as root (chmod does not stop root from writing) and no mount namespace is "
                    "available for a read-only bind mount: a read-only output folder cannot be made here")
    out = str(d / "out")
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", out,
               PY, "tools/train.py", *map(str, args)]
    before, repo_before = snapshot(d), repo_outputs()
    started = time.perf_counter()
    proc = subprocess.run(wrapped, cwd=ROOT, env=tool_env(d), capture_output=True, timeout=CASE_TIMEOUT)
    return Result(wrapped, proc.returncode, _text(proc.stdout), _text(proc.stderr), before, snapshot(d), d / "out", d,
                  repo_before, repo_outputs(), time.perf_counter() - started, "read-only bind mount")


@case("train-read-only-output-folder", "train.py", [r"out", r"not writable|read-only|permission"],
      runner=run_read_only)
def _(w, d):
    return None


# ---- tools/eval.py, tools/predict.py, tools/export.py: checkpoints and images


def weights_file(w, d, content=None, name="model.pdparams"):
    """A lone weights file (no config.yaml beside it) in ``in/``."""
    folder = d / "in" / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes((w.run / "latest.pdparams").read_bytes() if content is None else content)
    return path


OLD_METRICS = '{"n": 6, "accuracy": 0.5, "note": "an earlier evaluation the user keeps"}\n'
OLD_PREDICTIONS = "file,pm_probability,label,class_name\nold.jpg,0.1,0,non-pathologic myopia\n"


def eval_args(w, d, weights, arch="squeezenet1_1", *extra):
    # The output folder already holds an earlier evaluation: a failed one must leave it as it was.
    (d / "out").mkdir(parents=True, exist_ok=True)
    (d / "out" / "metrics.json").write_text(OLD_METRICS)
    return ["--arch", arch, "--weights", weights, "--data-dir", w.data, "--image-size", "32", "--output-dir",
            d / "out", *extra]


@case("eval-weights-of-another-architecture", "eval.py", [r"model\.pdparams", r"se_resnet18|do not fit|architecture"])
def _(w, d):
    return eval_args(w, d, weights_file(w, d), "se_resnet18")


@case("eval-weights-other-arch-config-beside", "eval.py", [r"latest\.pdparams", r"squeezenet1_1", r"resnet50"])
def _(w, d):
    run = w.run_copy(d / "in" / "run")
    return eval_args(w, d, run / "latest.pdparams", "resnet50")


@case("eval-truncated-weights", "eval.py", [r"model\.pdparams", r"truncated|not a complete|damaged"])
def _(w, d):
    data = (w.run / "latest.pdparams").read_bytes()
    return eval_args(w, d, weights_file(w, d, data[: len(data) // 2]))


@case("eval-weights-not-a-checkpoint", "eval.py", [r"model\.pdparams", r"not a .*checkpoint|not a paddle"])
def _(w, d):
    return eval_args(w, d, weights_file(w, d, w.images["good.jpg"]))


@case("eval-weights-zero-bytes", "eval.py", [r"model\.pdparams", r"empty|0 bytes"])
def _(w, d):
    return eval_args(w, d, weights_file(w, d, b""))


@case("eval-weights-missing", "eval.py", [r"gone\.pdparams", r"not found"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    return eval_args(w, d, d / "in" / "gone.pdparams")


@case("eval-damaged-checkpoint-digest", "eval.py", [r"best_model\.pdparams", r"damaged|digest"])
def _(w, d):
    run = w.run_copy(d / "in" / "run")
    data = bytearray((run / "best_model.pdparams").read_bytes())
    data[-100] ^= 0x01
    (run / "best_model.pdparams").write_bytes(bytes(data))
    return eval_args(w, d, run / "best_model.pdparams")


@case("eval-labels-with-label-2", "eval.py", [r"bad\.csv", r"0 or 1"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    rows = label_rows(w.valid_labels)
    rows[3] = rows[3][:2] + (2,) + rows[3][3:]
    (d / "in" / "bad.csv").write_text(labels_csv(rows))
    return eval_args(w, d, w.run / "best_model.pdparams", "squeezenet1_1", "--labels", d / "in" / "bad.csv")


@case("eval-output-dir-under-a-file", "eval.py", [r"a-file", r"not a directory|cannot create"])
def _(w, d):
    args = eval_args(w, d, w.run / "best_model.pdparams")
    (d / "out" / "a-file").write_text("x")
    args[args.index("--output-dir") + 1] = d / "out" / "a-file" / "metrics"
    return args


def predict_args(w, d, *paths):
    # --csv names a file that exists (yesterday's predictions): a failed run must not clobber it.
    (d / "out").mkdir(parents=True, exist_ok=True)
    (d / "out" / "predictions.csv").write_text(OLD_PREDICTIONS)
    return ["--weights", w.run / "best_model.pdparams", "--csv", d / "out" / "predictions.csv", *paths]


def predict_inputs(w, d, **files):
    folder = d / "in" / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@case("predict-non-image-file", "predict.py", [r"notes\.txt", r"not an image|expected a JPEG"])
def _(w, d):
    folder = predict_inputs(w, d, **{"notes.txt": b"patient list\n"})
    return predict_args(w, d, folder / "notes.txt")


@case("predict-text-named-jpg", "predict.py", [r"text\.jpg", r"not an image|expected a JPEG"])
def _(w, d):
    folder = predict_inputs(w, d, **{"text.jpg": w.images["text.jpg"], "good.jpg": w.images["good.jpg"]})
    return predict_args(w, d, folder)


@case("predict-zero-byte-image", "predict.py", [r"zero\.jpg", r"empty|0 bytes"])
def _(w, d):
    folder = predict_inputs(w, d, **{"zero.jpg": b""})
    return predict_args(w, d, folder / "zero.jpg")


@case("predict-truncated-image", "predict.py", [r"truncated\.jpg", r"truncated|damaged"])
def _(w, d):
    folder = predict_inputs(w, d, **{"truncated.jpg": w.images["truncated.jpg"]})
    return predict_args(w, d, folder / "truncated.jpg")


@case("predict-decompression-bomb", "predict.py", [r"bomb\.png", r"too large|pixels"])
def _(w, d):
    folder = predict_inputs(w, d, **{"bomb.png": w.images["bomb.png"]})
    return predict_args(w, d, folder / "bomb.png")


@case("predict-missing-path", "predict.py", [r"absent\.jpg", r"not found|no such"])
def _(w, d):
    (d / "in").mkdir(parents=True)
    return predict_args(w, d, d / "in" / "absent.jpg")


@case("predict-folder-without-images", "predict.py", [r"photos", r"no image|expected"])
def _(w, d):
    folder = predict_inputs(w, d, **{"readme.md": b"# nothing here\n"})
    return predict_args(w, d, folder)


@case("predict-inference-model-not-a-model", "predict.py", [r"not-a-model", r"expected|not found|export"])
def _(w, d):
    folder = predict_inputs(w, d, **{"good.jpg": w.images["good.jpg"]})
    w.run_copy(d / "in" / "not-a-model")
    (d / "out").mkdir(parents=True)
    return ["--inference-model", d / "in" / "not-a-model", "--csv", d / "out" / "p.csv", folder]


@case("predict-csv-under-a-file", "predict.py", [r"a-file", r"not a directory|cannot create|cannot write|is a file|not a folder"])
def _(w, d):
    folder = predict_inputs(w, d, **{"good.jpg": w.images["good.jpg"]})
    args = predict_args(w, d, folder)
    (d / "out" / "a-file").write_text("x")
    args[args.index("--csv") + 1] = d / "out" / "a-file" / "predictions.csv"
    return args


def earlier_export(d):
    """An output folder holding an earlier export (a failed export must leave it as it was)."""
    folder = d / "out" / "exported"
    folder.mkdir(parents=True)
    (folder / "preprocess.json").write_text('{"arch": "squeezenet1_1", "image_size": 32}\n')
    (folder / "inference.pdmodel").write_bytes(b"earlier model")
    return folder


@case("export-weights-of-another-architecture", "export.py", [r"model\.pdparams", r"do not fit|architecture"])
def _(w, d):
    earlier_export(d)
    return ["--arch", "se_resnet18", "--weights", weights_file(w, d), "--image-size", "32", "--output",
            d / "out" / "exported"]


@case("export-truncated-weights", "export.py", [r"model\.pdparams", r"truncated|not a complete|damaged"])
def _(w, d):
    data = (w.run / "latest.pdparams").read_bytes()
    earlier_export(d)
    return ["--arch", "squeezenet1_1", "--weights", weights_file(w, d, data[:5000]), "--image-size", "32",
            "--output", d / "out" / "exported"]


@case("export-output-under-a-file", "export.py", [r"a-file", r"not a directory|cannot create"])
def _(w, d):
    (d / "out").mkdir(parents=True)
    (d / "out" / "a-file").write_text("x")
    return ["--weights", w.run / "best_model.pdparams", "--output", d / "out" / "a-file" / "exported"]


@case("summary-bad-input-shape", "summary.py", [r"--input-shape", r"1,3,x"], code=2)
def _(w, d):
    (d / "out").mkdir(parents=True)
    return ["--arch", "squeezenet1_1", "--input-shape", "1,3,x"]


@case("summary-input-too-small", "summary.py", [r"squeezenet1_1|input", r"\b4\b|small|at least"])
def _(w, d):
    (d / "out").mkdir(parents=True)
    return ["--arch", "squeezenet1_1", "--input-shape", "1,3,4,4"]


# --------------------------------------------------------------------------- running the table


def _run_case(c, w, base):
    d = base / c.id
    d.mkdir(parents=True)
    if c.runner is not None:
        return c.runner(c, w, d)
    args = c.setup(w, d)
    return run_tool(c.tool, args, d, d / "out")


@pytest.fixture(scope="module")
def table(world, tmp_path_factory, request):
    """Run the selected rows two at a time; each test then checks its own result."""
    selected = {item.callspec.params["c"].id for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec") and "c" in item.callspec.params}
    base = tmp_path_factory.mktemp("cases")
    futures = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # The slow rows (trainings) first, so that the pool stays busy to the end.
        order = sorted((c for c in CASES if c.id in selected), key=lambda c: c.tool != "train.py")
        for c in order:
            futures[c.id] = pool.submit(_run_case, c, world, base)
    return futures


def test_table_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c, table):
    res = table[c.id].result()  # re-raises a skip or a failure of the row's own setup
    check_result(res, c)


# --------------------------------------------------------------------------- what is accepted


def test_accepted_images_predict(world, tmp_path):
    """Grayscale, RGBA, 16-bit, CMYK, palette, PNG (also named .jpg) and BMP images are converted, not refused."""
    folder = tmp_path / "in" / "photos"
    folder.mkdir(parents=True)
    for name in ACCEPTED:
        (folder / name).write_bytes(world.images[name])
    out = tmp_path / "out"
    out.mkdir()
    args = ["--weights", world.run / "best_model.pdparams", "--csv", out / "predictions.csv", "--quiet", folder]
    res = run_tool("predict.py", args, tmp_path, out)
    assert res.code == 0, res.stderr[-3000:]
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(Path(r["file"]).name for r in rows) == sorted(ACCEPTED)
    for row in rows:
        p = float(row["pm_probability"])
        assert 0.0 <= p <= 1.0 and row["label"] in ("0", "1"), row


def test_accepted_images_decode_to_bgr(world, tmp_path):
    """The same files through :func:`paddle_palm.data.read_image`: BGR uint8, 3 channels, the right size."""
    from paddle_palm.data import read_image

    for name in ACCEPTED:
        path = tmp_path / name
        path.write_bytes(world.images[name])
        image = read_image(path)
        assert image.dtype == np.uint8 and image.shape == (40, 40, 3), (name, image.shape, image.dtype)
    # 16-bit samples are scaled, not clipped: the 8-bit picture comes back.
    colour = fundus_like(40)
    path = tmp_path / "deep16.png"
    assert np.abs(read_image(path).astype(int) - colour).max() <= 1
