"""The detector's first two convolutions as one, for the compiled CPU path.

The network opens with a learned space-to-depth: a ``k×k`` convolution with stride
``k``, no bias and no activation, on the one-channel frame. On a CPU that layer
costs ~0.7 ms per 512² frame (XLA's convolution is poor at one input channel and
stride 4) for ~1 % of the arithmetic. Being linear, it folds exactly into the
convolution after it: rearrange the frame's ``k×k`` blocks into channels
(``space_to_depth``, a copy) and convolve with the product of the two kernels.
Same padding of the second convolution pads with zeros either way, so the result
is the network's own, to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def folded_network(model: Any) -> Callable[[Any], Any] | None:
    """``model``'s forward pass with its space-to-depth layer folded, or None.

    None when the model does not open with such a layer feeding one stride-1,
    ``same``-padded convolution (then run the model as it is). TensorFlow backend.
    """
    import keras
    import tensorflow as tf

    layers = model.layers
    if len(layers) < 3 or type(layers[0]).__name__ != "InputLayer":
        return None
    fold, nxt = layers[1], layers[2]
    if not (isinstance(fold, keras.layers.Conv2D) and isinstance(nxt, keras.layers.Conv2D)):
        return None
    f, n = fold.get_config(), nxt.get_config()
    k = f["kernel_size"][0]
    if not (
        tuple(f["kernel_size"]) == (k, k)
        and tuple(f["strides"]) == (k, k)
        and f["padding"] == "valid"
        and not f["use_bias"]
        and f["activation"] == "linear"
        and tuple(f["dilation_rate"]) == (1, 1)
        and f["groups"] == 1
        and f["data_format"] == "channels_last"
        and tuple(n["strides"]) == (1, 1)
        and tuple(n["dilation_rate"]) == (1, 1)
        and n["padding"] == "same"
        and n["groups"] == 1
        and n["data_format"] == "channels_last"
        and model.input.shape[-1] == 1
        and nxt.input is fold.output
    ):
        return None
    if any(  # the folded layer's output must feed nothing else
        any(t is fold.output for t in keras.tree.flatten(layer.input)) for layer in layers[3:]
    ):
        return None
    kernel = np.asarray(fold.get_weights()[0], np.float64).reshape(k * k, -1)
    weights = nxt.get_weights()
    # space_to_depth puts block offset (i, j) in channel i·k + j: the fold kernel's order
    composed = np.einsum("sc,yxco->yxso", kernel, np.asarray(weights[0], np.float64))
    w = tf.constant(composed.astype(np.float32))
    b = tf.constant(np.asarray(weights[1], np.float32)) if n["use_bias"] else None
    activation = nxt.activation
    tail = keras.Model(nxt.output, model.output)

    def forward(t: Any) -> Any:
        x = tf.nn.conv2d(tf.nn.space_to_depth(t, k), w, 1, "SAME")
        if b is not None:
            x = x + b
        return tail(activation(x), training=False)

    return forward
