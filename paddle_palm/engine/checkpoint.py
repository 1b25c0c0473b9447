"""Checkpoints: crash-safe saving, verified loading, weights of the right architecture.

A checkpoint is a set of files sharing a prefix in a run folder (the PaddleClas
layout, SPEC 5):

* ``<prefix>.pdparams`` - the network's ``state_dict`` (what ``load_weights`` reads);
* ``<prefix>.pdopt``    - the optimizer's state (momentum buffers, Adam moments, the
  learning-rate schedule), keyed by the parameters' structured names so it loads
  into a freshly built model whatever Paddle's global name counters say;
* ``<prefix>.pdstates`` - JSON: epoch, global step, best metric, the random states
  needed for an exact resume, and the SHA-256 digest of every file of the set;
* optional extra files such as ``<prefix>.pdema`` (the EMA weights).

Writing is journaled so that a crash or a SIGKILL at any moment leaves a complete
checkpoint on disk: every file is first written completely (temp file, fsync,
rename) as ``.<name>.pending``; the ``.pdstates`` journal is written last; only
then are the pending files renamed over the old ones.  :func:`recover_checkpoint`
(called by every loader) finishes an interrupted commit when the journal is
complete, and discards the pending files when it is not.  A file damaged later
(truncated, replaced) no longer matches its digest and loading says so.
"""

import hashlib
import json
import math
import os
import re

from paddle_palm.errors import CheckpointError
from paddle_palm.fileio import atomic_path, write_text_atomic

PARAMS_SUFFIX = ".pdparams"
OPT_SUFFIX = ".pdopt"
STATES_SUFFIX = ".pdstates"

#: Prefix of optimizer-state keys rewritten to a parameter's structured name.
_PARAM_KEY = "param:"

#: Version of the ``.pdstates`` layout, stored in the file (2: with ``digest``, the file's own digest).
STATES_FORMAT = 2
#: Files a checkpoint may hold besides its ``.pdstates``: ``<prefix><suffix>`` in the run folder.
CHECKPOINT_SUFFIXES = (PARAMS_SUFFIX, OPT_SUFFIX, ".pdema")


def sha256_file(path, chunk_size=1 << 20):
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def states_digest(record):
    """SHA-256 of a ``.pdstates`` record without its ``digest`` entry (canonical JSON).

    It makes an edited state file (``"epoch": 1`` changed to ``3``, a flipped byte) detectable:
    the loader recomputes it.  It is a check of integrity, not a signature: the safe loading of
    the other files (:mod:`paddle_palm.safe_load`) does not depend on it.
    """
    body = {k: v for k, v in record.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def unwrap_model(model):
    """The network inside a ``paddle.DataParallel`` wrapper (or the model itself)."""
    return getattr(model, "_layers", model)


def _pending(path):
    directory, name = os.path.split(path)
    return os.path.join(directory, "." + name + ".pending")


def _save_paddle_atomic(obj, path):
    import paddle

    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)


# --------------------------------------------------------------------------- optimizer state


def optimizer_state_by_structured_name(model, optimizer):
    """The optimizer's ``state_dict`` with parameter names replaced by structured ones.

    Paddle names optimizer buffers after ``param.name`` (``conv2d_3.w_0_velocity_0``),
    a global counter that differs between two models built in one process.  The
    structured name (``features.0.weight``) does not, so a checkpoint saved this way
    resumes into any freshly built copy of the architecture.
    """
    names = {p.name: n for n, p in unwrap_model(model).named_parameters()}
    # Longest first: "linear_1.w_0" must not match the key of "linear_1.w_01...".
    ordered = sorted(names, key=len, reverse=True)
    out = {}
    for key, value in optimizer.state_dict().items():
        new_key = key
        if isinstance(key, str):
            for pname in ordered:
                if key.startswith(pname + "_") or key == pname:
                    new_key = _PARAM_KEY + names[pname] + key[len(pname):]
                    break
        if key == "master_weights" and isinstance(value, dict):
            value = {(_PARAM_KEY + names[k]) if k in names else k: v for k, v in value.items()}
        out[new_key] = value
    return out


def restore_optimizer_state(model, optimizer, state):
    """Load a state saved by :func:`optimizer_state_by_structured_name` into ``optimizer``."""
    names = {n: p.name for n, p in unwrap_model(model).named_parameters()}
    restored = {}
    for key, value in state.items():
        new_key = key
        if isinstance(key, str) and key.startswith(_PARAM_KEY):
            rest = key[len(_PARAM_KEY):]
            match = None
            for sname in sorted(names, key=len, reverse=True):
                if rest == sname or rest.startswith(sname + "_"):
                    match = sname
                    break
            if match is None:
                raise CheckpointError(f"optimizer state names parameter {rest!r}, which this model does not have")
            new_key = names[match] + rest[len(match):]
        if key == "master_weights" and isinstance(value, dict):
            value = {
                names.get(k[len(_PARAM_KEY):], k) if isinstance(k, str) and k.startswith(_PARAM_KEY) else k: v
                for k, v in value.items()
            }
        restored[new_key] = value
    optimizer.set_state_dict(restored)


# --------------------------------------------------------------------------- saving


def save_checkpoint(run_dir, prefix, model, optimizer=None, states=None, extra=None):
    """Write the checkpoint ``<run_dir>/<prefix>.*`` crash-safely (see the module docstring).

    Args:
        run_dir: the run folder.
        prefix: ``"latest"`` or ``"best_model"``.
        model: the network (a ``DataParallel`` wrapper is unwrapped).
        optimizer: written as ``<prefix>.pdopt`` when given.
        states: JSON-serialisable dict written to ``<prefix>.pdstates`` (epoch, RNG
            states, ...); the digests of the other files are added under ``files``.
        extra: optional ``{suffix: state_dict}`` written as ``<prefix><suffix>``,
            e.g. ``{".pdema": ema.state_dict()}``.

    Returns:
        dict: the states as written (with ``files``).
    """
    run_dir = os.fspath(run_dir)
    base = os.path.join(run_dir, prefix)
    recover_checkpoint(run_dir, prefix)
    payload = {PARAMS_SUFFIX: unwrap_model(model).state_dict()}
    if optimizer is not None:
        payload[OPT_SUFFIX] = optimizer_state_by_structured_name(model, optimizer)
    for suffix, obj in (extra or {}).items():
        payload[suffix] = obj
    files = {}
    for suffix, obj in payload.items():
        pending = _pending(base + suffix)
        _save_paddle_atomic(obj, pending)
        files[prefix + suffix] = sha256_file(pending)
    record = dict(states or {})
    record["format"] = STATES_FORMAT
    record["files"] = files
    record.pop("digest", None)
    record["digest"] = states_digest(record)
    # The journal: once it exists (complete, by the atomic rename) the commit can always be finished.
    write_text_atomic(_pending(base + STATES_SUFFIX), json.dumps(record, indent=2, sort_keys=True) + "\n")
    _commit(run_dir, prefix, list(payload))
    # Files of an earlier set that this one no longer has (e.g. .pdema) would not match the journal.
    for stale in (OPT_SUFFIX, ".pdema"):
        if stale not in payload and os.path.exists(base + stale):
            os.remove(base + stale)
    return record


def _commit(run_dir, prefix, suffixes):
    base = os.path.join(run_dir, prefix)
    for suffix in suffixes:
        pending = _pending(base + suffix)
        if os.path.exists(pending):
            os.replace(pending, base + suffix)
    os.replace(_pending(base + STATES_SUFFIX), base + STATES_SUFFIX)


def recover_checkpoint(run_dir, prefix):
    """Finish or discard a commit that a crash interrupted; return True if one was finished.

    When the ``.pdstates`` journal is complete, every file it names was written
    completely before it, so the commit is rolled forward.  Without a journal the
    pending files are leftovers of an unfinished write and are removed.
    """
    run_dir = os.fspath(run_dir)
    base = os.path.join(run_dir, prefix)
    journal = _pending(base + STATES_SUFFIX)
    if not os.path.isdir(run_dir):
        return False
    # Pending files, and the temporaries of an atomic write that a kill interrupted
    # (".latest.pdparams.XXXX.tmp", "..latest.pdparams.pending.XXXX.tmp").
    leftovers = [n for n in os.listdir(run_dir) if n.startswith("." + prefix + ".") and n.endswith(".pending")]
    for name in os.listdir(run_dir):
        if re.match(r"^\.\.?" + re.escape(prefix) + r"\..*\.tmp$", name):
            os.remove(os.path.join(run_dir, name))
    if os.path.exists(journal):
        try:
            with open(journal, encoding="utf-8") as fh:
                names = json.load(fh)["files"]
            suffixes = [name[len(prefix):] for name in names]
        except (ValueError, KeyError, TypeError):
            suffixes = None
        # Only the checkpoint's own files are ever renamed (never a path the journal makes up).
        if suffixes is None or not set(suffixes) <= set(CHECKPOINT_SUFFIXES) \
                or any(not name.startswith(prefix) for name in names):
            raise CheckpointError(f"{journal} is damaged: expected the journal of checkpoint {prefix!r} "
                                  f"(remove it to keep the last complete checkpoint)")
        _commit(run_dir, prefix, suffixes)
        return True
    for name in leftovers:
        os.remove(os.path.join(run_dir, name))
    return False


# --------------------------------------------------------------------------- loading


def read_states(run_dir, prefix="latest", recover=True):
    """The ``<prefix>.pdstates`` JSON of a run folder (after finishing an interrupted commit).

    Args:
        run_dir: the run folder.
        prefix: the checkpoint's name.
        recover: finish or discard an interrupted commit first (see :func:`recover_checkpoint`);
            False for readers that must not write (the other processes of a distributed run).

    Raises:
        CheckpointError: the folder has no such checkpoint, or the file is not valid JSON.
    """
    run_dir = os.fspath(run_dir)
    if recover:
        recover_checkpoint(run_dir, prefix)
    path = os.path.join(run_dir, prefix + STATES_SUFFIX)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"no checkpoint in {run_dir}: {prefix}{STATES_SUFFIX} is missing "
            "(expected a run folder written by tools/train.py)"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            states = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged: not a JSON state file ({exc})") from None
    if not isinstance(states, dict) or "files" not in states:
        raise CheckpointError(f"{path} is not a paddle_palm state file (no 'files' entry)")
    validate_states(states, path, prefix)
    return states


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_COUNT = 10 ** 9


def _is_int(value, low=0, high=_MAX_COUNT):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_rng(rng):
    """None if ``rng`` is the random-state record the trainer writes, else the bad field."""
    if not isinstance(rng, dict):
        return "rng"
    if rng.get("seed") is not None and not _is_int(rng["seed"], -(2 ** 63), 2 ** 64):
        return "rng.seed"
    if "next_epoch" in rng and not _is_int(rng["next_epoch"]):
        return "rng.next_epoch"
    py = rng.get("python")
    if py is not None and not (isinstance(py, list) and len(py) == 3 and _is_int(py[0], 0, 10)
                               and isinstance(py[1], list) and len(py[1]) == 625
                               and all(_is_int(v, 0, 2 ** 32 - 1) for v in py[1])
                               and (py[2] is None or _is_number(py[2]))):
        return "rng.python"
    npy = rng.get("numpy")
    if npy is not None:
        import base64
        import binascii

        ok = (isinstance(npy, list) and len(npy) == 5 and npy[0] == "MT19937" and isinstance(npy[1], str)
              and _is_int(npy[2], 0, 624) and npy[3] in (0, 1) and _is_number(npy[4]))
        try:
            ok = ok and len(base64.b64decode(npy[1], validate=True)) == 624 * 4
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            return "rng.numpy"
    return None


def _bad_states_field(states, prefix):
    """The first field of a ``.pdstates`` record that is not what the trainer writes, or None."""
    if states.get("format") not in (1, STATES_FORMAT):  # 1: written before the digest was added
        return "format"
    files = states["files"]
    if not isinstance(files, dict):
        return "files"
    for name, digest in files.items():
        # Only <prefix>.pdparams/.pdopt/.pdema in the run folder itself: no path, no other file.
        if name not in [prefix + suffix for suffix in CHECKPOINT_SUFFIXES] or not isinstance(digest, str) \
                or not _HEX64.match(digest):
            return f"files/{name}"
    checks = {
        "epoch": lambda v: _is_int(v, 0, 10 ** 6),
        "global_step": _is_int,
        "epochs_without_improvement": lambda v: _is_int(v, 0, 10 ** 6),
        "arch": lambda v: isinstance(v, str) and 0 < len(v) <= 100,
        "time": lambda v: isinstance(v, str) and len(v) <= 100,
        "schedule": lambda v: isinstance(v, dict) and all(
            v.get(k) is None or _is_number(v[k]) for k in ("plateau_lr", "best_loss", "bad_epochs")),
    }
    for key, ok in checks.items():
        if key in states and not ok(states[key]):
            return key
    best = states.get("best")
    if best is not None:
        if not isinstance(best, dict) or not (best.get("metric") is None or isinstance(best["metric"], str)):
            return "best"
        for key in ("value", "val_loss"):
            if best.get(key) is not None and not _is_number(best[key]):
                return f"best.{key}"
        if best.get("epoch") is not None and not _is_int(best["epoch"], 0, 10 ** 6):
            return "best.epoch"
    if "operating_point" in states and not _is_operating_point(states["operating_point"]):
        return "operating_point"
    if "rng" in states:
        return _check_rng(states["rng"])
    return None


def _is_operating_point(op):
    """The record :func:`record_operating_point` writes: numbers where numbers belong, short texts."""
    if not isinstance(op, dict) or len(op) > 40:
        return False
    if not (_is_number(op.get("threshold")) and 0.0 <= op["threshold"] <= 1.0):
        return False
    if not (_is_number(op.get("temperature", 1.0)) and op.get("temperature", 1.0) > 0):
        return False
    for key, value in op.items():
        if not isinstance(key, str) or len(key) > 40:
            return False
        if isinstance(value, list):
            if len(value) > 2 or not all(v is None or _is_number(v) for v in value):
                return False
        elif not (value is None or _is_number(value) or isinstance(value, bool)
                  or (isinstance(value, str) and len(value) <= 100)):
            return False
    return True


def record_operating_point(run_dir, prefix, operating_point):
    """Add the chosen operating point to ``<prefix>.pdstates`` (its digest renewed, written atomically).

    Args:
        run_dir: the run folder.
        prefix: the checkpoint it belongs to (``"best_model"``).
        operating_point: a flat JSON-ready dict with at least ``threshold`` (and ``temperature``,
            ``rule``, the figures at that threshold): see :func:`paddle_palm.operating_point.fit_operating_point`.

    Returns:
        dict: the states as written.
    """
    if not _is_operating_point(operating_point):
        raise CheckpointError(f"operating point {operating_point!r} is not a flat record of numbers and short texts")
    states = read_states(run_dir, prefix)
    states["operating_point"] = operating_point
    states.pop("digest", None)
    states["digest"] = states_digest(states)
    write_text_atomic(os.path.join(os.fspath(run_dir), prefix + STATES_SUFFIX),
                      json.dumps(states, indent=2, sort_keys=True) + "\n")
    return states


def validate_states(states, path, prefix):
    """Check a ``.pdstates`` record against what :func:`save_checkpoint` and the trainer write.

    Types and ranges of every known field, file names that stay inside the run folder, and the
    record's own digest (:func:`states_digest`), so an edited value is refused before it is used.

    Raises:
        CheckpointError: naming the file and the first bad field.
    """
    bad = _bad_states_field(states, prefix)
    if bad is not None:
        raise CheckpointError(f"{path} is damaged or was edited: field '{bad}' is not what a paddle_palm "
                              f"checkpoint (format {STATES_FORMAT}) holds")
    if states["format"] == 1 and "digest" not in states:
        return
    digest = states.get("digest")
    try:
        matches = isinstance(digest, str) and digest == states_digest(states)
    except ValueError:  # NaN/Infinity somewhere in the record
        matches = False
    if not matches:
        raise CheckpointError(f"{path} is damaged or was edited: its field 'digest' does not match its content "
                              "(SHA-256 of the other fields)")


def require_states(states, fields, path):
    """Raise CheckpointError naming ``path`` and the first of ``fields`` missing from ``states``."""
    for field in fields:
        if field not in states:
            raise CheckpointError(f"{path} lacks the field {field!r}; expected a checkpoint written by tools/train.py")


def verify_checkpoint(run_dir, prefix="latest", recover=True):
    """Check every file of the checkpoint against the digests in its ``.pdstates``.

    ``recover`` is passed to :func:`read_states`.

    Returns:
        dict: the states.

    Raises:
        CheckpointError: a file is missing or does not match its digest (damaged or replaced).
    """
    states = read_states(run_dir, prefix, recover=recover)
    for name, digest in states["files"].items():
        path = os.path.join(os.fspath(run_dir), name)
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint file {path} is missing (listed in {prefix}{STATES_SUFFIX})")
        if sha256_file(path) != digest:
            raise CheckpointError(
                f"checkpoint file {path} is damaged: its SHA-256 digest does not match {prefix}{STATES_SUFFIX}"
            )
    return states


def load_state_file(path, what="checkpoint"):
    """Load a ``.pdparams``/``.pdopt``/``.pdema`` file safely, turning every failure into CheckpointError.

    The file is unpickled with the allow-list of :mod:`paddle_palm.safe_load`, never with a
    plain ``paddle.load``: a checkpoint from someone else cannot run code here.
    """
    from paddle_palm.safe_load import paddle_load

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} file {path} is empty (0 bytes)")
    try:
        obj = paddle_load(path)
    except CheckpointError:
        raise
    except Exception as exc:  # paddle raises ValueError, ... for content it cannot turn into tensors
        raise CheckpointError(
            f"{path} is not a complete Paddle checkpoint (truncated or another file type): {type(exc).__name__}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a Paddle state dict (found {type(obj).__name__})")
    return obj


def resolve_weights_path(path):
    """The ``.pdparams`` file meant by ``path``.

    ``path`` may be the file itself, a prefix without extension (``runs/x/best_model``)
    or a run folder (its ``best_model.pdparams``, else ``latest.pdparams``).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in ("best_model" + PARAMS_SUFFIX, "latest" + PARAMS_SUFFIX):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise CheckpointError(f"no weights in folder {path}: expected best_model.pdparams or latest.pdparams")
    if not os.path.exists(path) and os.path.isfile(path + PARAMS_SUFFIX):
        return path + PARAMS_SUFFIX
    return path


def _architecture_named_beside(path):
    try:
        from paddle_palm.engine.config import load_run_config

        return load_run_config(path, required=False).get("arch")
    except Exception:  # a damaged config.yaml must not hide the real weight error
        return None


def operating_point_beside(weights_path):
    """The operating point recorded in the state file of a weights file, or None."""
    prefix = os.fspath(weights_path)
    if prefix.endswith(PARAMS_SUFFIX):
        prefix = prefix[: -len(PARAMS_SUFFIX)]
    states = _own_states_beside(prefix)
    return (states or {}).get("operating_point")


def _own_states_beside(prefix_path):
    """The validated ``<prefix>.pdstates`` beside a weights file when it is one of ours, else None.

    PaddleClas writes a ``.pdstates`` of its own (a pickle, never read here); a JSON one with
    ``files`` is ours and is checked like any state file (schema, its own digest).
    """
    path = prefix_path + STATES_SUFFIX
    try:
        with open(path, encoding="utf-8") as fh:
            states = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(states, dict) or "files" not in states:
        return None
    validate_states(states, path, os.path.basename(prefix_path))
    return states


def load_weights(model, path, arch=None):
    """Load trained weights into ``model``, refusing anything that does not fit it exactly.

    Args:
        model: the freshly built network (``paddle.nn.Layer``; DataParallel is unwrapped).
        path: a ``.pdparams`` file, a prefix without extension, or a run folder (see
            :func:`resolve_weights_path`).
        arch: the architecture name the caller built, used in error messages and
            compared with the ``arch`` recorded in the ``config.yaml`` beside the
            weights (when there is one).

    Returns:
        str: the path of the weights file that was loaded.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a checkpoint,
            fails the digest recorded beside it, or holds weights of another
            architecture (missing or unexpected parameters, other shapes).  The
            message names the file and the expected architecture.
    """
    path = resolve_weights_path(path)
    expected = f"architecture {arch!r}" if arch else "this model"
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path} (expected a .pdparams file for {expected})")
    # A digest recorded beside the file (``<prefix>.pdstates``) catches damage early.
    prefix_path = path[: -len(PARAMS_SUFFIX)] if path.endswith(PARAMS_SUFFIX) else None
    states = _own_states_beside(prefix_path) if prefix_path else None
    if states is not None:
        digest = states["files"].get(os.path.basename(path))
        if digest and sha256_file(path) != digest:
            raise CheckpointError(
                f"weights file {path} is damaged: its SHA-256 digest does not match "
                f"{os.path.basename(prefix_path + STATES_SUFFIX)}"
            )
    state = load_state_file(path, what="weights")
    trained_as = _architecture_named_beside(path)
    if arch and trained_as and trained_as != arch:
        raise CheckpointError(f"{path} holds weights of architecture {trained_as!r} (config.yaml beside it), expected {arch!r}")
    net = unwrap_model(model)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and list(state[k].shape) != list(own[k].shape)
    ]
    if missing or unexpected or wrong:
        hint = f" (trained as {trained_as!r})" if trained_as else ""
        details = []
        if missing:
            details.append(f"{len(missing)} missing parameters, e.g. {missing[0]}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected parameters, e.g. {unexpected[0]}")
        if wrong:
            details.append(f"{len(wrong)} with another shape, e.g. {wrong[0]}")
        raise CheckpointError(f"weights in {path}{hint} do not fit {expected}: " + "; ".join(details))
    net.set_state_dict(state)
    return path


_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def checkpoint_exists(run_dir, prefix="latest"):
    """True when ``run_dir`` holds a (possibly interrupted but recoverable) checkpoint ``prefix``."""
    run_dir = os.fspath(run_dir)
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"bad checkpoint prefix {prefix!r}")
    base = os.path.join(run_dir, prefix)
    return os.path.isfile(base + STATES_SUFFIX) or os.path.isfile(_pending(base + STATES_SUFFIX))
