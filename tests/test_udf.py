"""The UDF plumbing: re-slicing Arrow batches, one model load per Python worker, device choice."""
import pandas as pd
import pytest

from clipscore.models.runtime import gpu_ordinal, resolve_device, resolve_precision
from clipscore.udfs.clip_udf import assigned_gpus, reslice, score_iterator


def test_reslice_cuts_every_batch_to_the_model_batch_size():
    batches = [(pd.Series(range(10)), pd.Series(range(10))), (pd.Series(range(3)), pd.Series(range(3)))]
    sizes = [len(images) for images, _ in reslice(iter(batches), 4)]
    assert sizes == [4, 4, 2, 3]
    firsts = [images.iloc[0] for images, _ in reslice(iter(batches), 4)]
    assert firsts == [0, 4, 8, 0]


def test_score_iterator_outputs_one_row_per_input_row(tiny_cfg, odd_images):
    batches = [
        (pd.Series([odd_images["jpeg"]] * 10), pd.Series([f"caption {i}" for i in range(10)])),
        (pd.Series([None, odd_images["png"], odd_images["rgba"]]), pd.Series(["a", "b", "c"])),
    ]
    out = list(score_iterator(tiny_cfg.replace(batch_size=4), iter(batches)))
    assert [len(frame) for frame in out] == [4, 4, 2, 3]
    merged = pd.concat(out, ignore_index=True)
    assert merged["similarity"].notna().sum() == 12 and merged["score_error"].notna().sum() == 1


def test_outside_a_task_no_gpu_is_assigned():
    assert assigned_gpus() == []


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
    import torch

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
