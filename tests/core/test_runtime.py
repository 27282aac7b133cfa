"""Device and precision choice for a scoring process (``clipscore.models.runtime``): the Spark-assigned GPU
address -> CUDA ordinal mapping, ``auto`` on CPU-only machines, and torch.cuda patched to look like a 2-GPU node.

The UDF that calls these inside a Spark task: tests/spark/test_udf.py, tests/spark/test_gpu_assignment.py."""
import pytest
import torch

from clipscore.models.runtime import gpu_ordinal, resolve_device, resolve_precision


@pytest.mark.parametrize(
    "address, visible, count, expected",
    [
        ("1", None, 4, 1),  # plain node: address is the ordinal
        ("3", "3", 1, 0),  # isolated by the cluster manager: physical 3 is ordinal 0
        ("2", "0,2", 2, 1),
        ("5", None, 1, 0),  # one visible device, whatever its physical id
    ],
)
def test_gpu_ordinal(address, visible, count, expected):
    assert gpu_ordinal(address, visible, count) == expected


def test_gpu_ordinal_out_of_range_fails_loudly():
    with pytest.raises(RuntimeError, match="sees 2 CUDA device"):
        gpu_ordinal("7", None, 2)


def test_device_and_precision_resolution_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this check is for machines without CUDA")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu", ["0"]) == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match="Spark assigned GPU"):
        resolve_device("auto", ["0"])
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda:0") == "fp16"
    with pytest.raises(RuntimeError, match="int8 runs on CPU only"):
        resolve_precision("int8", "cuda:1")


@pytest.mark.parametrize(
    "address, visible, count, expected",
    [
        ("1", None, 4, 1),  # no isolation: the address is the ordinal
        ("3", "3", 1, 0),  # YARN/Kubernetes narrowed CUDA_VISIBLE_DEVICES to the assigned GPU
        ("2", "1,2", 2, 1),
        ("5", None, 1, 0),  # one visible device: it must be the assigned one
    ],
)
def test_gpu_ordinal_under_isolation(address, visible, count, expected):
    assert gpu_ordinal(address, visible, count) == expected


def test_gpu_ordinal_rejects_impossible_assignments():
    with pytest.raises(RuntimeError, match="sees 2 CUDA device"):
        gpu_ordinal("5", None, 2)
    with pytest.raises(RuntimeError, match="not a CUDA ordinal"):
        gpu_ordinal("GPU-abc", None, 2)


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(RuntimeError, match=r"Spark assigned GPU\(s\) \['1'\]"):
            resolve_device("auto", ["1"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", ["1"]) == "cuda:1"  # two executors on a 2-GPU node: each its own
    assert resolve_device("auto", ["0"]) == "cuda:0"
    assert resolve_device("cuda", ["1"]) == "cuda:1"
    assert resolve_device("cpu", ["1"]) == "cpu"
    assert resolve_device("auto") == "cuda:0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto", ["3"]) == "cuda:0"
