"""Tests of paddle_palm.runtime: CPU detection, denormal flushing, setup_runtime's settings and errors, ExecutionPath."""

import os

import numpy as np
import pytest

from paddle_palm import runtime
from paddle_palm.errors import ConfigError

TINY = np.float32(1e-38)  # a normal float32 just above the denormal range (1.18e-38)


@pytest.fixture
def restore_fp_state(monkeypatch):
    """Undo what setup_runtime changes in this process: denormal flushing and MKL_DEBUG_CPU_TYPE."""
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", os.environ.get("MKL_DEBUG_CPU_TYPE", "5"))
    yield
    runtime.set_flush_denormal(False)


def test_cpu_info_reads_vendor_model_and_flags():
    info = runtime.cpu_info()
    assert set(info) >= {"vendor", "model", "flags", "avx2", "avx512", "avx512_bf16", "cores"}
    assert isinstance(info["flags"], set)
    assert info["avx512_bf16"] == ("avx512_bf16" in info["flags"])
    assert 1 <= info["cores"] <= (os.cpu_count() or 1)


def test_cpu_info_of_a_missing_file_is_empty_but_usable(tmp_path):
    info = runtime.cpu_info(str(tmp_path / "no-cpuinfo"))
    assert info["vendor"] == "" and info["flags"] == set() and info["avx512_bf16"] is False


def test_cpu_info_parses_a_cpuinfo_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
                    "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n")
    info = runtime.cpu_info(str(path))
    assert (info["vendor"], info["model"]) == ("AuthenticAMD", "AMD EPYC")
    assert info["avx2"] and info["avx512"] and info["avx512_bf16"]


def test_prepare_environment_selects_mkl_avx2_path_only_on_amd(monkeypatch):
    amd = {"vendor": "AuthenticAMD", "avx2": True}
    intel = {"vendor": "GenuineIntel", "avx2": True}
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    assert runtime.prepare_environment(intel) == {"MKL_DEBUG_CPU_TYPE": None}
    assert runtime.prepare_environment(amd) == {"MKL_DEBUG_CPU_TYPE": "5"}
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "2")  # a user's own choice is kept
    assert runtime.prepare_environment(amd) == {"MKL_DEBUG_CPU_TYPE": "2"}


def test_flush_denormal_switches_on_and_off(restore_fp_state):
    if not runtime.set_flush_denormal(True):
        pytest.skip("no way to set FTZ/DAZ on this platform")
    assert runtime.flush_denormal_enabled()
    assert TINY * np.float32(0.01) == 0.0  # flushed
    assert runtime.set_flush_denormal(False)
    assert not runtime.flush_denormal_enabled()
    assert TINY * np.float32(0.01) > 0.0  # gradual underflow again


def test_setup_runtime_fast_on_cpu(restore_fp_state):
    info = runtime.setup_runtime(device="cpu", fast=True)
    assert info["device"] == "cpu" and info["fast"] is True
    assert info["threads"] == runtime.usable_cores()
    assert info["train_step"] == "dygraph"
    assert info["flush_denormal"] == runtime.flush_denormal_enabled()
    if runtime.cpu_info()["vendor"] == "AuthenticAMD":
        assert info["mkl_cpu_type"] == os.environ["MKL_DEBUG_CPU_TYPE"]


def test_setup_runtime_plain_leaves_paddle_defaults(restore_fp_state):
    runtime.set_flush_denormal(False)
    info = runtime.setup_runtime(device="cpu", fast=False)
    assert info["fast"] is False and info["threads"] is None and info["flush_denormal"] is False
    assert not runtime.flush_denormal_enabled()
    assert runtime.setup_runtime(device="cpu", fast=False, threads=1)["threads"] == 1


@pytest.mark.parametrize("device", ["tpu", "", None, 3])
def test_setup_runtime_rejects_unknown_devices(device):
    with pytest.raises(ConfigError, match="device"):
        runtime.setup_runtime(device=device)


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2", True])
def test_setup_runtime_rejects_bad_thread_counts(threads):
    with pytest.raises(ConfigError, match="threads"):
        runtime.setup_runtime(device="cpu", threads=threads)


def test_execution_path_restores_what_it_changed(restore_fp_state, monkeypatch):
    """ExecutionPath applies the fast settings and the model's oneDNN path, then puts back what was there."""
    import paddle

    from paddle_palm import ops

    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    runtime.set_flush_denormal(False)
    threads_before = ops.set_threads(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1))
    with runtime.ExecutionPath(device="cpu", fast=True) as path:
        assert path.info["fast"] is True and path.info["threads"] == runtime.usable_cores()
        assert path.apply(model) is model
        assert path.info["conv"] in ("onednn", "paddle")
        assert ops.is_accelerated(model) == (path.info["conv"] == "onednn")
        assert runtime.flush_denormal_enabled() == path.info["flush_denormal"]
    assert not ops.is_accelerated(model)
    assert not runtime.flush_denormal_enabled()
    assert ops.set_threads(0) == threads_before
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ


def test_plain_execution_path_leaves_the_model_alone(restore_fp_state):
    import paddle

    from paddle_palm import ops

    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1))
    path = runtime.ExecutionPath(fast=False)
    assert path.apply(model) is model and not ops.is_accelerated(model) and "conv" not in path.info
    with pytest.raises(ConfigError, match="threads"):
        runtime.ExecutionPath(threads=0)


@pytest.mark.parametrize("environ, processes", [
    ({}, 1),
    ({"PADDLE_TRAINERS_NUM": "2"}, 2),
    ({"PADDLE_TRAINERS_NUM": "4", "PADDLE_LOCAL_SIZE": "2"}, 2),  # two machines of two processes
    ({"PADDLE_TRAINERS_NUM": ""}, 1),
    ({"PADDLE_TRAINERS_NUM": "x"}, 1),
])
def test_processes_on_this_machine(environ, processes):
    assert runtime.processes_on_this_machine(environ) == processes


@pytest.mark.parametrize("cores, processes, threads", [(2, 1, 2), (2, 2, 1), (8, 2, 4), (8, 3, 2), (2, 4, 1), (1, 1, 1)])
def test_default_threads_share_the_cores_among_the_processes(cores, processes, threads):
    # paddle.distributed.launch --nproc_per_node 2 on 2 cores: one thread each, not two apiece.
    assert runtime.default_threads(cores, processes) == threads


def test_setup_runtime_under_a_two_process_launch_uses_half_the_cores(restore_fp_state, monkeypatch):
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    info = runtime.setup_runtime(device="cpu", fast=True)
    assert info["threads"] == max(1, runtime.usable_cores() // 2)
    assert runtime.setup_runtime(device="cpu", fast=True, threads=3)["threads"] == 3  # a given count stays
