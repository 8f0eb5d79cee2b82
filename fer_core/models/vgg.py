"""VGG-style members: the report's VGG_v0/v1/v2 and the small ones that ship."""
from __future__ import annotations

import keras
from keras import layers, regularizers

from .ends import check_head, class_probabilities, image_input, pool


def vgg(variant: str = "v2", filters=(64, 128, 256, 512), dense=(512, 256, 128), num_classes: int = 7,
        conv_dropout: float = 0.25, dense_dropout: float = 0.5, l2_first: float = 0.0,
        l2: float = 0.0, head: str = "flatten", bn_momentum: float = 0.99, input_shape=(48, 48, 1),
        crop: int = 0, name: str = "vgg") -> keras.Model:
    """VGG with 4 blocks of two 3x3 convolutions, then a dense head.

    Variants (C conv, B batch norm, P 2x2 max pooling, D dropout), as in the report:
      - ``v0``: [C C P D] per block, no batch norm (the report's head is dense 25, 25).
      - ``v1``: [C C B P D], L2 ``l2_first`` (report: 0.01) on the first convolution only.
      - ``v2``: [C B C B P D].
    Choices where the report is silent: ReLU activations, 'same' padding, dropout ``conv_dropout``
    after each block and ``dense_dropout`` after each hidden dense layer, batch norm after each dense
    layer for v1/v2. ``head`` 'flatten' is the report's; 'avg' (global average pooling) keeps the small
    members small. ``bn_momentum`` 0.9 suits short runs (moving statistics settle in tens of steps).
    The input is raw 0..255 grey; scaling is part of the model, and so is the centre crop ``crop``
    (``ends.image_input``).
    """
    if variant not in ("v0", "v1", "v2"):
        raise ValueError(f"variant must be 'v0', 'v1' or 'v2', got {variant!r}")
    check_head(head)
    bn = variant != "v0"
    inputs, x = image_input(input_shape, crop)
    for b, f in enumerate(filters, start=1):
        for c in (1, 2):
            reg = l2_first if (b, c) == (1, 1) and l2_first else l2
            x = layers.Conv2D(f, 3, padding="same", use_bias=not bn,
                              kernel_regularizer=regularizers.l2(reg) if reg else None,
                              name=f"block{b}_conv{c}")(x)
            if variant == "v2":
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b}_bn{c}")(x)
            x = layers.Activation("relu", name=f"block{b}_relu{c}")(x)
        if variant == "v1":
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b}_bn")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        if conv_dropout:
            x = layers.Dropout(conv_dropout, name=f"block{b}_drop")(x)
    x = pool(x, head)
    for i, units in enumerate(dense, start=1):
        x = layers.Dense(units, use_bias=not bn, kernel_regularizer=regularizers.l2(l2) if l2 else None,
                         name=f"fc{i}")(x)
        if bn:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"fc{i}_bn")(x)
        x = layers.Activation("relu", name=f"fc{i}_relu")(x)
        if dense_dropout:
            x = layers.Dropout(dense_dropout, name=f"fc{i}_drop")(x)
    return keras.Model(inputs, class_probabilities(x, num_classes), name=name)


def vgg_params(a: dict) -> int:
    """Weights ``vgg(**a)`` would hold (``a``: every argument, defaults filled in), counted from the
    arguments alone, as ``count_params()`` counts them (batch norm's moving statistics included):
    a member's size is known before any of it is allocated."""
    bn = a["variant"] != "v0"
    h, w, cin = a["input_shape"]
    h, w = h - 2 * a["crop"], w - 2 * a["crop"]
    n = 0
    for f in a["filters"]:
        for c in (1, 2):
            n += 9 * cin * f + (0 if bn else f)
            n += 4 * f if a["variant"] == "v2" else 0
            cin = f
        n += 4 * f if a["variant"] == "v1" else 0
        h, w = h // 2, w // 2
    cin = cin * h * w if a["head"] == "flatten" else cin
    for units in a["dense"]:
        n += cin * units + (4 * units if bn else units)
        cin = units
    return n + cin * a["num_classes"] + a["num_classes"]
