"""Interoperability with the code people already have: mmseg / SegNeXt Light-Ham heads and ham options.

SegNeXt (Guo et al., NeurIPS 2022, arXiv 2209.08575) and mmsegmentation ship a ``LightHamHead`` built on the
Hamburger of Geng et al. ("Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553).
Its trained weights load into hamlib's :class:`hamlib.seg.heads.LightHamHead` by renaming keys; the layers
are the same (1x1 squeeze + GN + ReLU, ham_in 1x1 with bias + ReLU, NMF, ham_out 1x1 + GN, ReLU of the sum,
1x1 align + GN + ReLU, 1x1 classifier). The ham options of an mmseg config (``MD_S``, ``MD_R``, ``rand_init``,
...) are accepted by :class:`hamlib.Hamburger` and :func:`hamlib.md.build_ham` directly.

The mmseg key names, written from mmcv's ``ConvModule`` convention (``<name>.conv`` and ``<name>.gn``) and
mmseg's ``BaseDecodeHead`` (``conv_seg``)::

    squeeze.conv.weight, squeeze.gn.{weight,bias}
    hamburger.ham_in.conv.{weight,bias}
    hamburger.ham_out.conv.weight, hamburger.ham_out.gn.{weight,bias}
    align.conv.weight, align.gn.{weight,bias}
    conv_seg.{weight,bias}
    hamburger.ham.bases            (only with rand_init=False: a learned-bases buffer hamlib does not have)

This module imports only torch.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["LIGHTHAM_KEYS", "LightHamConversion", "convert_lightham_state_dict", "load_lightham_state_dict"]

# mmseg / SegNeXt LightHamHead key -> hamlib LightHamHead key.
LIGHTHAM_KEYS: dict[str, str] = {
    "squeeze.conv.weight": "squeeze.0.weight",
    "squeeze.gn.weight": "squeeze.1.weight",
    "squeeze.gn.bias": "squeeze.1.bias",
    "hamburger.ham_in.conv.weight": "ham.lower_bread.0.weight",
    "hamburger.ham_in.conv.bias": "ham.lower_bread.0.bias",
    "hamburger.ham_out.conv.weight": "ham.upper_bread.0.weight",
    "hamburger.ham_out.gn.weight": "ham.upper_bread.1.weight",
    "hamburger.ham_out.gn.bias": "ham.upper_bread.1.bias",
    "align.conv.weight": "align.0.weight",
    "align.gn.weight": "align.1.weight",
    "align.gn.bias": "align.1.bias",
    "conv_seg.weight": "cls.weight",
    "conv_seg.bias": "cls.bias",
}
_DROPPED = ("hamburger.ham.bases",)   # rand_init=False only; hamlib draws bases each forward (use eval_seed)
_PREFIXES = ("decode_head.", "module.decode_head.")


@dataclass
class LightHamConversion:
    """The result of :func:`convert_lightham_state_dict`.

    Attributes:
        state_dict: hamlib keys -> tensors, ready for ``LightHamHead.load_state_dict``.
        dropped: mmseg head keys with no hamlib counterpart (e.g. ``hamburger.ham.bases``), with their tensors.
        ignored: keys outside the decode head in a full-model checkpoint (backbone, auxiliary head, ...).
    """

    state_dict: dict[str, Tensor]
    dropped: dict[str, Tensor] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _head_items(state: Mapping) -> tuple[dict, list[str]]:
    """The decode head's entries of a head or full-model state dict (an mmseg checkpoint's ``state_dict`` too)."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    keys = list(state)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            head = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            return head, [k for k in keys if not k.startswith(prefix)]
    return dict(state), []


def convert_lightham_state_dict(state: Mapping) -> LightHamConversion:
    """Rename an mmseg / SegNeXt ``LightHamHead`` state dict to hamlib's :class:`~hamlib.seg.heads.LightHamHead` keys.

    Args:
        state: the head's state dict, a full segmentor's (keys under ``decode_head.``), or an mmseg
            checkpoint dict holding one under ``"state_dict"``.

    Returns:
        A :class:`LightHamConversion`.

    Raises:
        ValueError: a head key that is neither known nor droppable (e.g. a BN-normed head's ``squeeze.bn.weight``,
            which hamlib's GN head cannot take), or a value that is not a tensor.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a mapping (a state dict); got {type(state).__name__}")
    head, ignored = _head_items(state)
    out: dict[str, Tensor] = {}
    dropped: dict[str, Tensor] = {}
    unknown = []
    for key, value in head.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"state[{key!r}] must be a tensor; got {type(value).__name__}")
        if key in LIGHTHAM_KEYS:
            out[LIGHTHAM_KEYS[key]] = value
        elif key in _DROPPED:
            dropped[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"state has LightHamHead keys hamlib does not know: {sorted(unknown)}; expected the mmseg "
                         f"names {sorted(LIGHTHAM_KEYS)} (GroupNorm head)")
    return LightHamConversion(out, dropped, ignored)


def load_lightham_state_dict(head: nn.Module, state: Mapping, *, strict: bool = True) -> LightHamConversion:
    """Load mmseg / SegNeXt ``LightHamHead`` weights into a hamlib ``LightHamHead`` (in place).

    The hamlib head must be built with the same sizes (``in_channels`` of the fused levels, ``channels``,
    ``num_classes``) and ``md="nmf"``; shapes are checked. A learned-bases buffer (``rand_init=False``) is not
    loaded (a warning says so): hamlib draws random bases each forward; pass ``eval_seed`` for deterministic
    inference.

    Args:
        head: a :class:`hamlib.seg.heads.LightHamHead`.
        state: see :func:`convert_lightham_state_dict`.
        strict: require that every hamlib parameter is set. Default: True.

    Returns:
        The :class:`LightHamConversion` that was loaded.

    Raises:
        ValueError: unknown keys, missing keys (``strict``) or a shape mismatch, naming the key.
    """
    conv = convert_lightham_state_dict(state)
    own = head.state_dict()
    for key, value in conv.state_dict.items():
        if key not in own:
            raise ValueError(f"head has no parameter {key!r}: is it a hamlib LightHamHead with md='nmf'?")
        if tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"shape mismatch for {key!r}: the head has {tuple(own[key].shape)}, the state dict "
                             f"{tuple(value.shape)}; build the head with the checkpoint's channel sizes")
    missing = sorted(set(own) - set(conv.state_dict))
    if strict and missing:
        raise ValueError(f"state is missing {len(missing)} key(s) of the head: {missing}")
    if conv.dropped:
        warnings.warn(f"not loaded: {sorted(conv.dropped)} (learned bases of rand_init=False); hamlib draws random "
                      f"bases each forward, pass eval_seed=<int> for deterministic inference", UserWarning,
                      stacklevel=2)
    with torch.no_grad():
        head.load_state_dict(conv.state_dict, strict=strict)
    return conv
