"""Training and fine-tuning CLIP on a table (``clipscore train``).

Stages, one module each:

* ``options``: ``TrainOptions``, validated like every other option object;
* ``jobs/train.py`` (Spark): read the table with the scorer's reader, load and validate every row
  with the scorer's loader and the model's own processor (resize and crop), and stage the crops and
  captions as Parquet; bad rows are skipped and counted by reason;
* ``data``: each training process reads its shard of the staging table;
* ``loop``: the training process (one per GPU, or gloo on CPU, under ``TorchDistributor``): symmetric
  InfoNCE with a learned temperature, checkpoints, resume, validation, the saved model folder;
* ``metrics``: recall@k both ways and ROC AUC of true against swapped captions;
* ``card``: the training card written beside the weights.
"""
