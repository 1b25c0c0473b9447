"""A trained model's settings (paddle_palm.engine.model_settings): the weights file is checked first."""

import pytest

from paddle_palm.engine.model_settings import resolve_model_settings
from paddle_palm.errors import MissingFileError


def test_missing_weights_without_arch_is_file_not_found(tmp_path):
    # Not "no architecture given": the file is what is missing.
    with pytest.raises(MissingFileError, match=r"weights file not found: .*gone\.pdparams"):
        resolve_model_settings(tmp_path / "gone.pdparams")
    with pytest.raises(MissingFileError, match="gone"):
        resolve_model_settings(tmp_path / "gone", arch="resnet50")  # a prefix without extension


def test_a_prefix_of_an_existing_file_is_accepted(tmp_path):
    (tmp_path / "model.pdparams").write_bytes(b"")
    settings = resolve_model_settings(tmp_path / "model", arch="squeezenet1_1")
    assert settings.arch == "squeezenet1_1"
