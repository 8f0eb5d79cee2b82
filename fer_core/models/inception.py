"""Inception (GoogLeNet-style) member, without GoogLeNet's initial pooling (inputs are 48 px)."""
from __future__ import annotations

import keras
from keras import layers, regularizers

from .ends import check_head, class_probabilities, image_input, pool


def _conv(x, filters, size, reg, name, bn_momentum=0.99):
    x = layers.Conv2D(filters, size, padding="same", use_bias=False, kernel_regularizer=reg, name=name)(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=name + "_bn")(x)
    return layers.Activation("relu", name=name + "_relu")(x)


def inception_block(x, n: int, reg, name: str, m: float = 0.99):
    """One I-block of width ``n``: concatenation of
    1x1 (3/4 n), 1x1 -> 3x3 (1/2 n), 1x1 -> 5x5 (1/8 n), 5x5 (1/4 n), 3x3 max pool -> 1x1 (1/4 n).
    The 1x1 reductions before the 3x3 and 5x5 have the width of the branch they feed."""
    b1 = _conv(x, 3 * n // 4, 1, reg, f"{name}_1x1", m)
    b3 = _conv(_conv(x, n // 2, 1, reg, f"{name}_3x3_reduce", m), n // 2, 3, reg, f"{name}_3x3", m)
    b5 = _conv(_conv(x, n // 8, 1, reg, f"{name}_5x5_reduce", m), n // 8, 5, reg, f"{name}_5x5", m)
    b5d = _conv(x, n // 4, 5, reg, f"{name}_5x5_direct", m)
    bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv(bp, n // 4, 1, reg, f"{name}_pool_proj", m)
    return layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, b5d, bp])


def inception(blocks=(2, 2, 2, 2), n0: int = 64, step: int = 32, stem: int = 64, l2: float = 2e-4,
              dropout: float = 0.4, head: str = "flatten", num_classes: int = 7, bn_momentum: float = 0.99,
              input_shape=(48, 48, 1), crop: int = 0, name: str = "inception") -> keras.Model:
    """Stem 3x3 conv, then stages of I-blocks (``blocks[i]`` per stage) with 2x2 max pooling between
    stages; block k has width n = n0 + step * k, as in the report (n = 64, +32 per block). Then flatten
    (or global average pooling with ``head='avg'``), dropout, dense softmax. L2 ``l2`` (report: 2e-4) on
    every convolution. Where the report is silent: batch norm + ReLU after every convolution; the stem
    and the stage layout are ours."""
    check_head(head)
    reg = regularizers.l2(l2) if l2 else None
    inputs, x = image_input(input_shape, crop)
    x = _conv(x, stem, 3, reg, "stem_conv", bn_momentum)
    k = 0
    for s, count in enumerate(blocks, start=1):
        for j in range(1, count + 1):
            x = inception_block(x, n0 + step * k, reg, f"block{s}_inc{j}", bn_momentum)
            k += 1
        if s < len(blocks):
            x = layers.MaxPooling2D(2, name=f"block{s}_pool")(x)
    return keras.Model(inputs, class_probabilities(pool(x, head), num_classes, dropout), name=name)


def inception_params(a: dict) -> int:
    """Weights ``inception(**a)`` would hold, counted from the arguments alone (``vgg_params``)."""
    conv = lambda cin, cout, size: size * size * cin * cout + 4 * cout  # noqa: E731 - no bias, batch norm
    h, w, cin = a["input_shape"]
    h, w = h - 2 * a["crop"], w - 2 * a["crop"]
    n = conv(cin, a["stem"], 3)
    cin, k = a["stem"], 0
    for s, count in enumerate(a["blocks"], start=1):
        for _ in range(count):
            b = a["n0"] + a["step"] * k
            n += (conv(cin, 3 * b // 4, 1) + conv(cin, b // 2, 1) + conv(b // 2, b // 2, 3)
                  + conv(cin, b // 8, 1) + conv(b // 8, b // 8, 5) + conv(cin, b // 4, 5) + conv(cin, b // 4, 1))
            cin, k = 3 * b // 4 + b // 2 + b // 8 + b // 4 + b // 4, k + 1
        if s < len(a["blocks"]):
            h, w = h // 2, w // 2
    cin = cin * h * w if a["head"] == "flatten" else cin
    return n + cin * a["num_classes"] + a["num_classes"]
