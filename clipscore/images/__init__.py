"""Encoded bytes to RGB frames, checked from the header first.

* ``loader``: ``ImageLoader`` (fetch, header checks, decode, a reason per bad image);
* ``frames``: the decode itself (libjpeg-turbo for JPEGs, Pillow otherwise; exact or reduced);
* ``jpeg``: batched JPEG decode on the model's device (``gpu_decode``); ``thumbnails``: small previews, same limits.
"""
