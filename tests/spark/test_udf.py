"""The UDF plumbing: re-slicing Arrow batches, one model load per Python worker, the task's GPUs.

The device and precision choice it relies on: tests/core/test_runtime.py."""
import pandas as pd

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
