"""The arithmetic cost of a Keras model: floating-point operations per input.

Counts the multiply–adds of the convolution and dense layers (2 operations each),
which is where these networks spend their time; bias, activation, pooling and
concatenation add well under 1 %. The layer sizes are taken from running the
model once on zeros of the given shape, so a fully convolutional detector is
counted at the frame size asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def count_flops(model: Any, shape: tuple[int, ...]) -> int:
    """Floating-point operations of one forward pass on one input of ``shape``.

    Parameters
    ----------
    model
        A Keras functional model.
    shape
        One input's shape without the batch axis, e.g. ``(512, 512, 1)``.

    Returns
    -------
    int
        2 × the multiply–adds of every ``Conv2D`` and ``Dense`` layer.
    """
    import keras

    counted = keras.layers.Conv2D | keras.layers.Dense
    layers = [layer for layer in model.layers if isinstance(layer, counted)]
    if not layers:
        return 0
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outs = probe([np.zeros((1, *shape), np.float32)])
    outs = outs if isinstance(outs, list | tuple) else [outs]
    total = 0
    for layer, out in zip(layers, outs, strict=True):
        kernel = layer.kernel.shape
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = kernel  # cin is per group already
            total += 2 * int(np.prod(out.shape[1:3])) * kh * kw * cin * cout
        else:
            total += 2 * int(np.prod(out.shape[1:-1], dtype=np.int64)) * kernel[0] * kernel[1]
    return int(total)
