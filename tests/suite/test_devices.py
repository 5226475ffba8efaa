"""Device and precision choice: by capability, explicit when asked, a clear error when impossible."""
import pytest
import torch

from suite import devices


def test_auto_picks_cpu_without_a_gpu(monkeypatch):
    monkeypatch.delenv("REPRO_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device(None) == "cpu"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        devices.resolve_device("cuda:0")
    with pytest.raises(ValueError, match="expected auto, cpu, cuda or cuda:N"):
        devices.resolve_device("tpu")


def test_env_var_is_the_default(monkeypatch):
    monkeypatch.setenv("REPRO_DEVICE", "cpu")
    assert devices.resolve_device(None) == "cpu"


@pytest.mark.parametrize("native,expected", [(True, "bfloat16"), (False, "float32")])
def test_cpu_precision_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.delenv("REPRO_DTYPE", raising=False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert devices.resolve_dtype("auto", "cpu") == expected
    assert devices.autocast_dtype("cpu") == (None if expected == "float32" else torch.bfloat16)


def test_explicit_dtype_wins_and_aliases_work(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_dtype("bf16", "cpu") == "bfloat16"
    assert devices.resolve_dtype("float32", "cpu") == "float32"
    with pytest.raises(ValueError, match="--dtype"):
        devices.resolve_dtype("int8", "cpu")


def test_device_info_names_the_cpu():
    info = devices.device_info("cpu", "float32").to_json()
    assert info["device"] == "cpu" and info["gpu_name"] is None and info["cpu_model"]


def test_mini_profile_defaults_to_fp32_and_spawned_trainers_see_it(monkeypatch):
    """The mini baselines are pinned in fp32: a bf16-capable CPU must not silently train in bf16 at mini."""
    import argparse
    import os

    from suite import cli

    monkeypatch.delenv("REPRO_DTYPE", raising=False)
    seen = {}
    monkeypatch.setattr(cli, "_reproduce", lambda a, device, dtype: seen.update(dtype=dtype,
                                                                               env=os.environ["REPRO_DTYPE"]) or 0)
    a = argparse.Namespace(device="cpu", dtype=None, profile="mini")
    assert cli.cmd_reproduce(a) == 0
    assert seen == {"dtype": "float32", "env": "float32"}
    assert "REPRO_DTYPE" not in os.environ  # restored after the command
    a = argparse.Namespace(device="cpu", dtype="bfloat16", profile="mini")
    cli.cmd_reproduce(a)
    assert seen["dtype"] == "bfloat16"  # an explicit choice wins


def test_a_single_run_at_mini_uses_the_profile_precision(monkeypatch, tmp_path):
    """`repro run --profile mini` records the precision `repro reproduce` pins the mini baselines in; smoke keeps
    the hardware's choice, and the environment beats the profile."""
    from suite.runner import execute
    from suite.spec import RunSpec

    monkeypatch.delenv("REPRO_DTYPE", raising=False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)

    def dtype_of(profile: str) -> str:
        spec = RunSpec.make("humaneval", "oracle", profile, limit=1)
        res = execute(spec, root=tmp_path / "runs", data_root=None, device="cpu", dtype=None, quiet=True,
                      force=True)
        return res.metrics["device"]["dtype"]

    assert (dtype_of("mini"), dtype_of("smoke")) == ("float32", "bfloat16")
    monkeypatch.setenv("REPRO_DTYPE", "bfloat16")
    assert dtype_of("mini") == "bfloat16"
