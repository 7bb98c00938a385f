"""hamlib.seg.metrics: confusion matrix with ignore index, mIoU, per-class IoU, pixel accuracy."""
import math

import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_cm
from sklearn.metrics import jaccard_score

from hamlib.seg.metrics import ConfusionMatrix, confusion_matrix, scores


def test_matches_sklearn_and_ignores(gen):
    t = torch.randint(0, 5, (1000,), generator=gen)
    p = torch.randint(0, 5, (1000,), generator=gen)
    t[::7] = 255
    cm = confusion_matrix(p, t, 5)
    keep = t != 255
    assert cm.tolist() == sk_cm(t[keep].numpy(), p[keep].numpy(), labels=list(range(5))).tolist()
    s = scores(cm)
    ref = jaccard_score(t[keep].numpy(), p[keep].numpy(), average=None, labels=list(range(5)))
    assert [s["iou"][str(i)] for i in range(5)] == pytest.approx(list(ref))
    assert s["miou"] == pytest.approx(ref.mean())
    assert s["pixel_acc"] == pytest.approx(float((t[keep] == p[keep]).float().mean()))


def test_hand_example_absent_class_left_out():
    t = torch.tensor([0, 0, 1, 1, 255])
    p = torch.tensor([0, 1, 1, 1, 2])
    s = scores(confusion_matrix(p, t, 3))
    assert s["iou"]["0"] == pytest.approx(0.5) and s["iou"]["1"] == pytest.approx(2 / 3)
    assert s["iou"]["2"] is None and math.isclose(s["miou"], (0.5 + 2 / 3) / 2)
    assert s["pixel_acc"] == pytest.approx(0.75) and s["pixels"] == 4


def test_accumulates_over_batches_and_checks_input():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    cm.update(torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))
    assert cm.cm.tolist() == [[1, 1], [0, 2]]
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(3), torch.zeros(4), 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.zeros(2), torch.tensor([0, 7]), 2)
