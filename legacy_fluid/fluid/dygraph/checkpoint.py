"""``save_dygraph`` / ``load_dygraph`` of 1.8 (FLUID_1_8.md section 7): the ``.pdparams`` / ``.pdopt`` files.

The file is a protocol-2 pickle of ``{key: numpy array}`` plus the key
``'StructuredToParameterName@@'`` mapping structured keys to parameter names, exactly as
1.8 wrote it.  It names numpy's pickle helpers ``numpy.core`` whatever numpy writes it,
so files written here load in a real 1.8 (numpy 1.x) and in Paddle 3's ``paddle.load``,
and 1.8's files load here.  Reading goes through a restricted unpickler
(:mod:`legacy_fluid._safepickle`): a file that asks for anything but numpy arrays,
numbers, strings and containers is refused with
:class:`legacy_fluid.UnsafeCheckpointError` naming the file and the global.
The suffix comes from the **first** value: a parameter gives
``.pdparams``, anything else (an optimizer's state) ``.pdopt``.
"""

import os
import tempfile

import numpy as np
import paddle
from paddle.base import framework as _framework

from legacy_fluid import _safepickle
from legacy_fluid.fluid import _support

__all__ = ["save_dygraph", "load_dygraph"]

_NAME_TABLE = "StructuredToParameterName@@"


def save_dygraph(state_dict, model_path):
    """Write ``state_dict`` to ``model_path + '.pdparams'`` (parameters) or ``'.pdopt'`` (anything else).

    Args:
        state_dict: ``layer.state_dict()`` or ``optimizer.state_dict()``; must not be empty.
        model_path: ``dirname/prefix``; missing folders are created.
    """
    base_name = os.path.basename(model_path)
    if base_name == "":
        raise AssertionError("The input model_path MUST be format of dirname/filename [dirname\\filename in "
                             "Windows system], but received filename is empty string.")
    if len(state_dict) == 0:
        raise AssertionError("state_dict is empty, no need to save")
    suffix = ".pdparams"
    for _, value in state_dict.items():
        if not isinstance(value, _framework.EagerParamBase):
            suffix = ".pdopt"
        break
    model_dict = {}
    name_table = {}
    for key, value in state_dict.items():
        if isinstance(value, paddle.Tensor):
            model_dict[key] = np.asarray(value.numpy())
            name_table[key] = value.name
        else:
            model_dict[key] = value
    model_dict[_NAME_TABLE] = name_table
    file_name = model_path + suffix
    dir_name = os.path.dirname(file_name)
    if dir_name and not os.path.exists(dir_name):
        os.makedirs(dir_name)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(file_name) + ".", dir=dir_name or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            _safepickle.dump(model_dict, fh, protocol=2)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what open(file_name, 'wb') would have given
        os.replace(tmp, file_name)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_dygraph(model_path, keep_name_table=False):
    """Read ``<prefix>.pdparams`` and, when present, ``<prefix>.pdopt``.

    Args:
        model_path: the prefix (a ``.pdparams`` / ``.pdopt`` suffix is stripped).
        keep_name_table: keep the ``'StructuredToParameterName@@'`` entry.

    Returns:
        ``(param_dict, opt_dict_or_None)``: plain dicts of numpy arrays.

    Raises:
        RuntimeError: ``<prefix>.pdparams`` does not exist.
        legacy_fluid.UnsafeCheckpointError: a file names a global a checkpoint never holds
            (e.g. ``os.system``), or is not a pickle.
    """
    prefix = model_path
    if prefix.endswith(".pdparams"):
        prefix = prefix[:-9]
    elif prefix.endswith(".pdopt"):
        prefix = prefix[:-6]
    params_file = prefix + ".pdparams"
    if not os.path.exists(params_file):
        raise RuntimeError("Parameter file [ {} ] not exists".format(params_file))
    with open(params_file, "rb") as fh:
        para_dict = _safepickle.load(fh, params_file)
    if not keep_name_table and _NAME_TABLE in para_dict:
        del para_dict[_NAME_TABLE]
    opti_dict = None
    opti_file = prefix + ".pdopt"
    if os.path.exists(opti_file):
        with open(opti_file, "rb") as fh:
            opti_dict = _safepickle.load(fh, opti_file)
    return para_dict, opti_dict


__getattr__ = _support.module_getattr(__name__)
