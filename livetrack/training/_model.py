"""The detector network: stride-4, fully convolutional, a few hundred MFLOP per 512².

Input (B, H, W, 1), H and W multiples of 4; output (B, H/4, W/4, 3): a heat
logit (soft Gaussian target around each particle) and the offset from the cell's
centre to the nearest particle (in cell units, −1.5…1.5).
A strided 4×4 convolution folds each cell into channels (a learned
space-to-depth), then three 3×3 convolutions (the last dilated) see about 36 px.
"""

from __future__ import annotations

from typing import Any


def stride4_trunk(
    inp: Any, channels: tuple[int, int, int], init: Any, rectified_fold: bool = False
) -> Any:
    """The fold and three convolutions every stride-4 network here shares (see above).

    ``rectified_fold``: the fold gets a bias and a ReLU (LodeSTAR, whose votes are the
    positions: synthetic rings 0.25 → 0.10 px RMS per read); the detector's stays
    linear, folded into the next convolution when it runs in ONNX Runtime
    (:mod:`livetrack.detection._onnx`, which knows these layer names).
    """
    from keras import layers

    c1, c2, c3 = channels
    x = layers.Conv2D(
        16, 4, strides=4, use_bias=rectified_fold, activation="relu" if rectified_fold else None,
        kernel_initializer=init, name="fold",
    )(inp)  # fmt: skip
    x = layers.Conv2D(
        c1, 3, padding="same", activation="relu", kernel_initializer=init, name="conv1"
    )(x)
    x = layers.Conv2D(
        c2, 3, padding="same", activation="relu", kernel_initializer=init, name="conv2"
    )(x)
    x = layers.Conv2D(
        c3,
        3,
        padding="same",
        dilation_rate=2,
        activation="relu",
        kernel_initializer=init,
        name="conv3",
    )(x)
    return x


def build_detector(channels: tuple[int, int, int] = (24, 32, 32), seed: int = 0) -> Any:
    """A compiled-ready Keras model (not yet compiled)."""
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input((None, None, 1), name="frame")
    x = stride4_trunk(inp, channels, init)
    logit = layers.Conv2D(
        1,
        1,
        kernel_initializer=init,
        bias_initializer=keras.initializers.Constant(-4.0),
        name="logit",
    )(x)
    offset = layers.Conv2D(2, 1, activation="tanh", kernel_initializer=init, name="offset_raw")(x)
    offset = layers.Rescaling(1.5, name="offset")(offset)
    out = layers.Concatenate(name="detections")([logit, offset])
    return keras.Model(inp, out, name="livetrack_detector")


def detector_loss(positive_weight: float) -> Any:
    """Logistic loss on the soft heat targets plus Huber loss on the offsets.

    The logistic term is weighted towards particles; the offset term by the heat target.
    """
    import keras
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        pos = y_true[..., 0]
        weight = y_true[..., 3]
        logit = y_pred[..., 0]
        bce = ops.maximum(logit, 0) - logit * pos + ops.log1p(ops.exp(-ops.abs(logit)))
        w = weight * (1.0 + (positive_weight - 1.0) * pos)
        # subtract the target's own entropy so a perfect prediction scores 0
        eps = 1e-6
        ent = -(pos * ops.log(pos + eps) + (1.0 - pos) * ops.log(1.0 - pos + eps))
        det = ops.sum(w * (bce - ent)) / ops.maximum(ops.sum(weight), 1.0)
        d = y_pred[..., 1:3] - y_true[..., 1:3]
        huber = ops.where(ops.abs(d) < 0.1, 0.5 * d * d, 0.1 * (ops.abs(d) - 0.05))
        near = ops.where(pos > 0.3, pos, 0.0)
        off = ops.sum(ops.sum(huber, axis=-1) * near) / ops.maximum(ops.sum(near), 1.0)
        return det + 20.0 * off

    loss.__name__ = "detector_loss"
    return keras.saving.register_keras_serializable("livetrack")(loss)
