"""What a face costs, in operations: the ensemble's choice weighs it (``evaluate.choose_ensemble``).

``model_gflop`` counts a model's multiply-adds in its convolutions and dense layers (2 FLOP each;
batch norm, pooling and activations are a few percent and left out), from the layers' own shapes.
``ensemble_gflop_per_face`` multiplies by the test-time views. What a machine delivers, the
benchmarks' yardstick, is harness/yardstick.py's.
"""
from __future__ import annotations

import math


def _layer_macs(layer) -> int:
    import keras

    name = type(layer).__name__
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D,
                              keras.layers.SeparableConv2D)):
        return 0
    out = tuple(layer.output.shape)
    cin = int(layer.input.shape[-1])
    positions = math.prod(int(d) for d in out[1:-1])  # output pixels (1 for a dense layer on a vector)
    cout = int(out[-1])
    if name == "Dense":
        return positions * cin * cout
    kh, kw = layer.kernel_size
    if name == "DepthwiseConv2D":
        return positions * kh * kw * cin * layer.depth_multiplier
    if name == "SeparableConv2D":
        return positions * (kh * kw * cin * layer.depth_multiplier + cin * layer.depth_multiplier * cout)
    groups = getattr(layer, "groups", 1)
    return positions * kh * kw * (cin // groups) * cout


def _layers(model):
    """Every layer of a model, nested models' layers included (the ensemble nests its members)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers(layer)
        else:
            yield layer


def model_gflop(model) -> float:
    """GFLOP of one image through ``model`` (conv and dense multiply-adds x 2)."""
    return 2 * sum(_layer_macs(l) for l in _layers(model)) / 1e9


def ensemble_gflop_per_face(models, views: int) -> float:
    """GFLOP of one face through every member, ``views`` test-time views each."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views!r}")
    return views * sum(model_gflop(m) for m in models)

