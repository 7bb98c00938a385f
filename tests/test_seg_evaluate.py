"""hamlib.seg.evaluate: multi-scale + flip inference, evaluation, parameter/FLOP/latency accounting."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hamlib.measure import count_flops, count_params
from hamlib.seg.evaluate import evaluate, head_cost, predict
from hamlib.seg.model import build_model
from hamlib.train import HamOptions


class Oracle(nn.Module):
    """Predicts the label stored in the first channel (one-hot logits)."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].round().long(), 3).permute(0, 3, 1, 2).float()


def test_evaluate_perfect_and_flip_scales():
    lab = torch.randint(0, 3, (4, 16, 16))
    img = lab[:, None].float().expand(4, 3, 16, 16).clone()
    s = evaluate(Oracle(), DataLoader(TensorDataset(img, lab), batch_size=2), 3, flip=True)
    assert s["miou"] == 1.0 and s["pixel_acc"] == 1.0
    out = predict(Oracle(), img[:1], scales=(1.0,), flip=True)
    assert torch.equal(out.argmax(1), lab[:1]) and out.max() == 2.0  # two summed one-hot maps


def test_multiscale_output_size():
    m = build_model(3, backbone="tiny", head="fcn", channels=16).eval()
    out = predict(m, torch.randn(1, 3, 40, 56), scales=(0.75, 1.0, 1.25), flip=True)
    assert out.shape == (1, 3, 40, 56)


def test_flops_of_a_conv():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(1, 8, 10, 10)
    assert count_flops(lambda: conv(x)) == 2 * 8 * 16 * 9 * 100
    assert count_params(conv) == 8 * 16 * 9


def test_head_cost_attention_grows_faster_than_ham():
    costs = {}
    for head in ("attention", "ham"):
        m = build_model(3, backbone="tiny", head=head, channels=64, ham=HamOptions(R=16))
        costs[head] = [head_cost(m, (s, s), repeats=1)["head_gflops"] for s in (64, 256)]
    # attention is quadratic in the number of pixels n, the Hamburger linear
    assert costs["attention"][1] / costs["attention"][0] > costs["ham"][1] / costs["ham"][0] * 1.5
