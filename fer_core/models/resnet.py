"""ResNet member with the report's residual block."""
from __future__ import annotations

import keras
from keras import layers, regularizers

from .ends import class_probabilities, image_input, pool


def residual_block(x, filters: int, stride: int, reg, name: str, bn_momentum: float = 0.99):
    """The report's block: B, then C-F-B-C (conv, activation, batch norm, conv) added to the B output.
    Where the stage downsamples (``stride`` 2) or widens, the shortcut is a 1x1 conv of every
    ``stride``-th pixel: the report's strided 1x1 conv, arranged as a subsampling (a 1x1 max pool)
    then a 1x1 conv. The two are the same function with the same weights and FLOPs; the arrangement
    keeps TensorFlow's oneDNN off its strided 1x1 backward-data kernel, which crashes on AMD Zen 4
    (AVX-512, no AMX) for a shortcut whose input channels are not a multiple of 16 (docs/training.md,
    bench/repro_onednn.py)."""
    b = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn0")(x)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", kernel_regularizer=reg, name=f"{name}_conv1")(b)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn1")(y)
    y = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=reg, name=f"{name}_conv2")(y)
    if stride != 1 or x.shape[-1] != filters:
        if stride != 1:
            b = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(b)
        b = layers.Conv2D(filters, 1, kernel_regularizer=reg, name=f"{name}_shortcut")(b)
    return layers.Add(name=f"{name}_add")([b, y])


def resnet(depths=(3, 4, 6, 3), filters=(64, 128, 256, 512), l2: float = 1e-4, dropout: float = 0.0,
           num_classes: int = 7, bn_momentum: float = 0.99, input_shape=(48, 48, 1), crop: int = 0,
           name: str = "resnet") -> keras.Model:
    """Stem 3x3 conv, stages of ``depths[i]`` residual blocks with ``filters[i]`` (doubling per stage);
    every stage after the first starts with a stride-2 block. Then batch norm, ReLU, global average
    pooling, dense softmax. Depths 2-5-5-2 and 3-4-6-3 (ResNet34-like) are the report's. Where the
    report is silent: the stem (one 3x3 conv with filters[0]), ReLU after the add is left to the next
    block's pre-activation, L2 ``l2`` on convolutions."""
    if len(depths) != len(filters):
        raise ValueError(f"depths and filters must have the same length, got {depths!r} and {filters!r}")
    reg = regularizers.l2(l2) if l2 else None
    inputs, x = image_input(input_shape, crop)
    x = layers.Conv2D(filters[0], 3, padding="same", kernel_regularizer=reg, name="stem_conv")(x)
    for s, (d, f) in enumerate(zip(depths, filters), start=1):
        for j in range(1, d + 1):
            x = residual_block(x, f, 2 if (j == 1 and s > 1) else 1, reg, f"block{s}_res{j}", bn_momentum)
    x = layers.BatchNormalization(momentum=bn_momentum, name="head_bn")(x)
    x = layers.Activation("relu", name="head_relu")(x)
    return keras.Model(inputs, class_probabilities(pool(x, "avg"), num_classes, dropout), name=name)


def resnet_params(a: dict) -> int:
    """Weights ``resnet(**a)`` would hold, counted from the arguments alone (``vgg_params``)."""
    depths, filters = a["depths"], a["filters"]
    if len(depths) != len(filters) or not filters:
        raise ValueError(f"depths and filters must have the same length (1 or more), got {depths!r} and {filters!r}")
    cin = a["input_shape"][2]
    n = 9 * cin * filters[0] + filters[0]
    cin = filters[0]
    for s, (d, f) in enumerate(zip(depths, filters), start=1):
        for j in range(1, d + 1):
            stride = 2 if (j == 1 and s > 1) else 1
            n += 4 * cin + (9 * cin * f + f) + 4 * f + (9 * f * f + f)
            if stride != 1 or cin != f:
                n += cin * f + f
            cin = f
    return n + 4 * cin + cin * a["num_classes"] + a["num_classes"]
