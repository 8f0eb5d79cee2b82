"""What every member has at its two ends, so that the families agree: raw 0..255 grey faces in,
rescaled inside the network (no caller ever normalises: training, evaluation and serving feed the
same pixels), and class probabilities out, in float32 even under mixed precision. The layer names
are keys of the weights files: they stay as they are."""
from __future__ import annotations

import keras
from keras import layers

HEADS = ("flatten", "avg")  # the report's flattened feature map, or its global average
CROP_LAYER = "crop"


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be 'flatten' or 'avg', got {head!r}")


def image_input(input_shape, crop: int = 0):
    """(the model's input, the rescaled tensor the network starts from).

    ``crop`` > 0 cuts that many pixels from every side before the first convolution: the network
    sees the face's centre (40 px of 48 for crop 4) and costs (1 - 2 crop / 48)^2 of the whole face.
    Behind the training augmentation's ±10% shift, the centre of a shifted face is a random crop,
    the literature's crop training; at test time it is the centre crop of each
    view. Inside the model, so every caller still feeds 48 px faces."""
    top = min(input_shape[0], input_shape[1]) // 4
    if not isinstance(crop, int) or isinstance(crop, bool) or not 0 <= crop < top:
        raise ValueError(f"crop must be an int in [0, {top}), got {crop!r}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    return inputs, (layers.Cropping2D(crop, name=CROP_LAYER)(x) if crop else x)


def crop_of(model) -> int:
    """Pixels ``model`` cuts from each side of its input before its first convolution (0: none)."""
    names = {l.name for l in model.layers}
    return int(model.get_layer(CROP_LAYER).cropping[0][0]) if CROP_LAYER in names else 0


def pool(x, head: str):
    """The last feature map as a vector, as ``head`` says."""
    return layers.Flatten(name="flatten")(x) if head == "flatten" else layers.GlobalAveragePooling2D(name="avg_pool")(x)


def class_probabilities(x, num_classes: int, dropout: float = 0.0):
    """Optional dropout, then the softmax over the classes."""
    if dropout:
        x = layers.Dropout(dropout, name="head_drop")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
