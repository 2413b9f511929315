"""--device: a run that asked for a GPU never runs on the CPU; auto says when it falls back where a
GPU was expected. (Runs here, on a machine without a usable GPU.)"""
import logging

import pytest
import torch

from hpcgan.config import RunConfig
from hpcgan.errors import UsageError
from hpcgan.world import cuda_unusable_reason, pick_device

no_gpu = pytest.mark.skipif(cuda_unusable_reason() == "", reason="a usable GPU is here")


def test_device_is_validated_where_declared():
    assert RunConfig.from_values({"device": "cuda"}).run.device == "cuda"
    with pytest.raises(UsageError, match="--device must be one of auto, cuda, cpu"):
        RunConfig.from_values({"device": "gpu"})


def test_cpu_is_the_cpu():
    assert pick_device(0, "cpu", env={"CUDA_VISIBLE_DEVICES": "0"}) == torch.device("cpu")


@no_gpu
def test_cuda_without_a_usable_gpu_refuses_in_one_line():
    with pytest.raises(UsageError) as e:
        pick_device(0, "cuda", env={})
    assert str(e.value).startswith("--device cuda, but ") and "\n" not in str(e.value)
    assert e.value.exit_code == 2


@no_gpu
def test_auto_warns_only_where_a_gpu_was_expected(caplog):
    with caplog.at_level(logging.WARNING, logger="hpcgan"):
        assert pick_device(0, "auto", env={}) == torch.device("cpu")
        assert not caplog.records
        assert pick_device(0, "auto", env={"SLURM_GPUS_ON_NODE": "4"}) == torch.device("cpu")
    assert len(caplog.records) == 1
    assert "running on the CPU although SLURM_GPUS_ON_NODE is set" in caplog.records[0].getMessage()
