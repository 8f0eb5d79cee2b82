"""Model builders, one per family, and a registry from architecture name to builder."""
from __future__ import annotations

from .inception import inception
from .resnet import resnet
from .vgg import vgg

BUILDERS = {"vgg": vgg, "inception": inception, "resnet": resnet}


def build(arch: str, **kwargs):
    """Build architecture ``arch`` (a key of ``BUILDERS``) with the builder's keyword arguments."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[arch](**kwargs)


__all__ = ["BUILDERS", "build", "inception", "resnet", "vgg"]
