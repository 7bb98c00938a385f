"""hamlib.interop and the mmseg ham option names: SegNeXt / mmseg LightHamHead weights load into hamlib's head."""
import warnings

import pytest
import torch

import hamlib
from hamlib.interop import LIGHTHAM_KEYS, convert_lightham_state_dict, load_lightham_state_dict
from hamlib.seg.heads import LightHamHead

LEVELS, CH, K = (8, 16, 32), 64, 5


def _mmseg_state(levels=LEVELS, ch=CH, k=K, seed=0):
    """A state dict with mmseg's documented LightHamHead key names and shapes (mmcv ConvModule: conv + gn)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return {
        "squeeze.conv.weight": r(ch, sum(levels), 1, 1), "squeeze.gn.weight": r(ch), "squeeze.gn.bias": r(ch),
        "hamburger.ham_in.conv.weight": r(ch, ch, 1, 1), "hamburger.ham_in.conv.bias": r(ch),
        "hamburger.ham_out.conv.weight": r(ch, ch, 1, 1),
        "hamburger.ham_out.gn.weight": r(ch), "hamburger.ham_out.gn.bias": r(ch),
        "align.conv.weight": r(ch, ch, 1, 1), "align.gn.weight": r(ch), "align.gn.bias": r(ch),
        "conv_seg.weight": r(k, ch, 1, 1), "conv_seg.bias": r(k),
    }


def test_mmseg_lightham_weights_load_into_hamlib_head():
    head = LightHamHead(list(LEVELS), CH, K)
    state = _mmseg_state()
    load_lightham_state_dict(head, state)
    own = head.state_dict()
    for old, new in LIGHTHAM_KEYS.items():
        torch.testing.assert_close(own[new], state[old], rtol=0, atol=0)
    assert set(own) == set(LIGHTHAM_KEYS.values())     # every hamlib parameter has an mmseg source
    feats = {"c2": torch.randn(1, 8, 8, 8), "c3": torch.randn(1, 16, 4, 4), "c4": torch.randn(1, 32, 2, 2)}
    assert head.eval()(feats).shape == (1, K, 8, 8)


def test_full_checkpoint_prefix_and_learned_bases():
    full = {"state_dict": {**{f"decode_head.{k}": v for k, v in _mmseg_state().items()},
                           "decode_head.hamburger.ham.bases": torch.rand(1, CH, 16),
                           "backbone.stem.weight": torch.zeros(3)}}
    head = LightHamHead(list(LEVELS), CH, K)
    with pytest.warns(UserWarning, match="eval_seed"):
        conv = load_lightham_state_dict(head, full)
    assert conv.ignored == ["backbone.stem.weight"] and list(conv.dropped) == ["hamburger.ham.bases"]


def test_bad_state_dicts_name_the_key():
    head = LightHamHead(list(LEVELS), CH, K)
    with pytest.raises(ValueError, match=r"squeeze\.bn\.weight"):
        convert_lightham_state_dict({**_mmseg_state(), "squeeze.bn.weight": torch.ones(CH)})
    with pytest.raises(ValueError, match=r"shape mismatch for 'cls.weight'"):
        load_lightham_state_dict(head, _mmseg_state(k=7))
    partial = _mmseg_state()
    del partial["align.gn.bias"]
    with pytest.raises(ValueError, match=r"missing 1 key.*align\.1\.bias"):
        load_lightham_state_dict(head, partial)


def test_mmseg_ham_option_names():
    """mmseg's SegNeXt-T ham_kwargs work as written; NMF's inv_t is ignored with a warning, not a TypeError."""
    mmseg = dict(MD_S=1, MD_R=16, train_steps=6, eval_steps=7, inv_t=100, rand_init=True)
    with pytest.warns(UserWarning, match="ignores inv_t=100"):
        block = hamlib.Hamburger(64, 64, md="nmf", **mmseg)
    assert (block.ham.S, block.ham.R, block.ham.train_steps, block.ham.eval_steps) == (1, 16, 6, 7)
    with pytest.warns(UserWarning, match="inv_t"):
        ham = hamlib.build_ham("nmf", **mmseg)
    assert ham.R == 16
    vq = hamlib.build_ham("vq", MD_S=2, MD_R=8, INV_T=10, TRAIN_STEPS=3)
    assert (vq.S, vq.R, vq.inv_t, vq.train_steps) == (2, 8, 10.0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hamlib.NMF2D(inv_t=1)                              # the value NMF uses anyway: silent
    with pytest.raises(ValueError, match="rand_init=False"):
        hamlib.build_ham("nmf", rand_init=False)
    with pytest.raises(ValueError, match="MD_R=16 and R=32"):
        hamlib.build_ham("nmf", MD_R=16, R=32)
    with pytest.raises(ValueError, match="MD_D=32 must equal channels / S = 64 / 1"):
        hamlib.Hamburger(64, 64, MD_D=32)
