"""hamlib.seg.transforms: joint image/label augmentation and seeded views."""
import torch

from hamlib.seg.data import IGNORE_INDEX, SyntheticShapes
from hamlib.seg.transforms import (EvalTransform, SeededView, TrainTransform, normalize, pad_crop, random_flip,
                                   resize_pair)


def test_pad_crop_pads_label_with_ignore():
    img, lab = torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.long)
    i2, l2 = pad_crop(img, lab, (6, 7), None)
    assert i2.shape == (3, 6, 7) and l2.shape == (6, 7)
    assert (l2[4:] == IGNORE_INDEX).all() and (l2[:, 5:] == IGNORE_INDEX).all() and (l2[:4, :5] == 0).all()
    assert i2[:, 4:].abs().sum() == 0


def test_flip_moves_image_and_label_together():
    img = torch.arange(12.).view(1, 3, 4).expand(3, 3, 4).clone()
    lab = torch.arange(12).view(3, 4)
    for s in range(8):
        i2, l2 = random_flip(img, lab, torch.Generator().manual_seed(s))
        assert torch.equal(i2[0].long(), l2)


def test_resize_label_is_nearest():
    lab = torch.randint(0, 5, (10, 10))
    _, l2 = resize_pair(torch.rand(3, 10, 10), lab, (20, 20))
    assert set(l2.unique().tolist()) <= set(lab.unique().tolist())
    assert torch.equal(l2[::2, ::2], lab)


def test_normalize_imagenet():
    x = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1).expand(3, 2, 2)
    torch.testing.assert_close(normalize(x), torch.zeros(3, 2, 2))


def test_train_transform_shape_and_seeded_view_determinism():
    ds = SyntheticShapes(6, 48, 3, seed=0)
    view = SeededView(ds, TrainTransform(32, (0.5, 1.0, 1.5)), seed=7)
    a, b = view[(3, 2)], view[(3, 2)]
    assert a[0].shape == (3, 32, 32) and a[1].shape == (32, 32)
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], b[1])
    diff = [not torch.equal(view[(e, 2)][1], a[1]) for e in range(4, 10)]
    assert any(diff)  # other epochs draw other augmentations


def test_eval_transform_resizes():
    img, lab = EvalTransform((24, 32))(torch.rand(3, 48, 64), torch.zeros(48, 64, dtype=torch.long))
    assert img.shape == (3, 24, 32) and lab.shape == (24, 32)
