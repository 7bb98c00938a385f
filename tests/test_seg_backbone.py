"""hamlib.seg.backbone: dilated ResNet, output stride 8, torchvision-compatible state dicts."""
import pytest
import torch

from hamlib.seg.backbone import load_pretrained, resnet

# Parameter counts of torchvision's models (including the 1000-class fc), from torchvision's docs.
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_param_count_matches_torchvision(name):
    m = resnet(name)
    fc = 512 * (4 if name == "resnet50" else 1) * 1000 + 1000
    assert sum(p.numel() for p in m.parameters()) + fc == TORCHVISION_PARAMS[name]


def test_torchvision_key_names_and_shapes():
    sd = resnet("resnet50").state_dict()
    expected = {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                "layer1.0.downsample.1.weight": (256,), "layer2.3.conv3.weight": (512, 128, 1, 1),
                "layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.2.bn3.num_batches_tracked": ()}
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert len([k for k in sd if k.endswith("num_batches_tracked")]) == 53
    assert len(sd) == 318  # torchvision resnet50: 53 convs + 53 BNs x 5 + fc (2) = 320 keys, minus fc


def test_output_stride_8_and_dilations():
    m = resnet("tiny").eval()
    out = m(torch.randn(1, 3, 64, 96))
    assert out["c4"].shape == (1, 128, 8, 12) and out["c3"].shape == (1, 64, 8, 12)
    assert m.layer3[0].conv1.dilation == (1, 1) and m.layer4[0].conv1.dilation == (2, 2)
    r50 = resnet("resnet50")
    assert r50.layer3[1].conv2.dilation == (2, 2) and r50.layer4[1].conv2.dilation == (4, 4)
    assert r50.out_channels == 2048 and r50.aux_channels == 1024


def test_load_pretrained_roundtrip_drops_fc(tmp_path):
    src = resnet("resnet18")
    sd = {**src.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    dst = resnet("resnet18")
    assert sorted(load_pretrained(dst, str(path))) == ["fc.bias", "fc.weight"]
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_load_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(resnet("tiny"), str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(resnet("tiny"), resnet("resnet18").state_dict())


def test_bad_name():
    with pytest.raises(ValueError, match="resnet152"):
        resnet("resnet152")
