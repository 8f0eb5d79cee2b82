"""Model builders, one per family, and a registry from architecture name to builder.

``arguments`` checks a builder's keyword arguments against its signature (names, and types as its
defaults have them) and ``count_params`` counts the weights a build would hold from the arguments
alone, so that a stored member (fer_core/store.py) is checked and sized before anything is built."""
from __future__ import annotations

import inspect
import math

from .inception import inception, inception_params
from .resnet import resnet, resnet_params
from .vgg import vgg, vgg_params

BUILDERS = {"vgg": vgg, "inception": inception, "resnet": resnet}
PARAMS = {"vgg": vgg_params, "inception": inception_params, "resnet": resnet_params}


def build(arch: str, **kwargs):
    """Build architecture ``arch`` (a key of ``BUILDERS``) with the builder's keyword arguments."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[arch](**kwargs)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(key: str, value, default) -> None:
    """``value`` of the kind ``default`` is: a sequence of positive integers, an integer >= 0, a
    finite number >= 0, or a string."""
    if isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 1 for v in value):
            raise ValueError(f"kwargs.{key}: expected a list of positive integers, got {value!r}")
    elif _is_int(default):
        if not _is_int(value) or value < 0:
            raise ValueError(f"kwargs.{key}: expected an integer >= 0, got {value!r}")
    elif isinstance(default, float):
        if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"kwargs.{key}: expected a number >= 0, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"kwargs.{key}: expected a string, got {value!r}")


def arguments(arch, kwargs) -> dict:
    """Every argument ``build(arch, **kwargs)`` would get, defaults filled in; ValueError naming the
    field (``arch``, ``kwargs`` or ``kwargs.<name>``) for an unknown architecture, a ``kwargs`` that is
    not a mapping, an unknown argument, or a value not of its default's kind."""
    if not isinstance(arch, str) or arch not in BUILDERS:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {sorted(BUILDERS)}")
    if not isinstance(kwargs, dict):
        raise ValueError(f"kwargs: expected an object of {arch} arguments, got {type(kwargs).__name__} {kwargs!r:.80}")
    params = inspect.signature(BUILDERS[arch]).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"kwargs: unknown argument {unknown[0]!r} for {arch}; known: {sorted(params)}")
    for key, value in kwargs.items():
        _check_value(key, value, params[key].default)
    return {k: kwargs.get(k, p.default) for k, p in params.items()}


def count_params(arch, kwargs) -> int:
    """Weights ``build(arch, **kwargs)`` would hold (what its ``count_params()`` says), from the
    arguments alone: nothing is built. ValueError as ``arguments`` raises it."""
    a = arguments(arch, kwargs)
    return PARAMS[arch](a)


__all__ = ["BUILDERS", "PARAMS", "arguments", "build", "count_params", "inception", "resnet", "vgg"]
