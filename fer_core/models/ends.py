"""What every member has at its two ends, so that the families agree: raw 0..255 grey faces in,
rescaled inside the network (no caller ever normalises: training, evaluation and serving feed the
same pixels), and class probabilities out, in float32 even under mixed precision. The layer names
are keys of the weights files: they stay as they are."""
from __future__ import annotations

import keras
from keras import layers

HEADS = ("flatten", "avg")  # the report's flattened feature map, or its global average


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be 'flatten' or 'avg', got {head!r}")


def image_input(input_shape):
    """(the model's input, the rescaled tensor the network starts from)."""
    inputs = keras.Input(shape=input_shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def pool(x, head: str):
    """The last feature map as a vector, as ``head`` says."""
    return layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="avg_pool")(x)


def class_probabilities(x, num_classes: int, dropout: float = 0.0):
    """Optional dropout, then the softmax over the classes."""
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
