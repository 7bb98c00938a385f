"""Tests for hamlib.viz: toy data, photo loading, solver stepper, ipywidgets UI and jshtml animation."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hamlib import md, viz  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_toy_blobs_shape_nonneg_seeded():
    x, labels = viz.toy_blobs(n=90, centers=3, seed=1)
    assert x.shape == (2, 90) and labels.shape == (90,) and float(x.min()) >= 0
    torch.testing.assert_close(x, viz.toy_blobs(n=90, centers=3, seed=1)[0])
    assert not torch.equal(x, viz.toy_blobs(n=90, centers=3, seed=2)[0])


def test_photo_roundtrip_and_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path))  # empty folder -> bundled sklearn photo
    img, desc = viz.load_photo((12, 16))
    assert img.shape == (12, 16, 3) and "scikit-learn" in desc and 0 <= img.min() and img.max() <= 1
    x = viz.image_to_matrix(img)
    assert x.shape == (3, 12 * 16)
    np.testing.assert_allclose(viz.matrix_to_image(x, (12, 16)), img, atol=1e-6)
    with pytest.raises(FileNotFoundError):
        viz.load_photo((12, 16), source="camvid")


@pytest.mark.parametrize("method", ["vq", "cd", "nmf"])
def test_stepper_objective_equals_trace(method):
    x, _ = viz.toy_blobs(n=60)
    s = viz.SolverStepper(x, method, rank=3, steps=5, inv_t=10.0, seed=3)
    alg = md.make_algorithm(method, inv_t=10.0)
    bases0 = alg.init_bases(1, 2, 3, generator=torch.Generator().manual_seed(3))
    ref = md.solve(x[None], bases0, method=method, steps=5, inv_t=10.0, return_trace=True).trace
    np.testing.assert_allclose(s.objective, ref.objective_curve()[:, 0].numpy(), rtol=1e-6)
    assert s.n_iterates == 6
    # the drawn reconstruction gives exactly the plotted objective
    _, _, recon = s.state(4)
    assert abs(float((x - recon).pow(2).sum()) - s.objective[4]) < 1e-4 * max(1.0, s.objective[4])
    with pytest.raises(ValueError, match="k must"):
        s.state(6)


def test_stepper_draws_points_and_image():
    import matplotlib.pyplot as plt

    x, _ = viz.toy_blobs(n=60)
    fig = viz.SolverStepper(x, "cd", rank=3, steps=2).draw(1)
    assert len(fig.axes) == 3
    plt.close(fig)
    img = viz.image_to_matrix(np.random.default_rng(0).random((6, 8, 3)).astype(np.float32))
    fig = viz.SolverStepper(img, "nmf", rank=2, steps=2, image_shape=(6, 8)).draw(2)
    assert fig.axes[0].images and fig.axes[1].images
    plt.close(fig)
    with pytest.raises(ValueError, match="image_shape"):
        viz.SolverStepper(img, "nmf", image_shape=(5, 8))


def test_animation_frame_count_and_jshtml():
    x, _ = viz.toy_blobs(n=40)
    anim = viz.solver_animation(x, "vq", rank=3, steps=4, dpi=40)
    assert anim._save_count == 5 or len(list(anim.new_frame_seq())) == 5
    html = anim.to_jshtml()
    assert "<script" in html and html.count("data:image/png;base64") + html.count("frames[") >= 5
    with pytest.raises(ValueError, match="steps"):
        viz.solver_animation(x, steps=30)


def test_widget_builds_and_renders_default_state():
    ipywidgets = pytest.importorskip("ipywidgets")
    x, _ = viz.toy_blobs(n=40)
    img = viz.image_to_matrix(np.random.default_rng(0).random((6, 8, 3)).astype(np.float32))
    box = viz.solver_widget(x, img, (6, 8), steps=3)
    assert isinstance(box, ipywidgets.VBox)
    assert box.stepper.method == "vq" and box.stepper.n_iterates == 4   # default state computed on build
    out = box.children[2]                                                 # the figure is the Output's one output
    assert len(out.outputs) == 1 and "image/png" in out.outputs[0]["data"]
    first = out.outputs[0]["data"]["image/png"]
    method = box.children[0].children[1]
    method.value = "nmf"                                                  # a callback re-runs the solver
    assert box.stepper.method == "nmf"
    assert len(out.outputs) == 1 and out.outputs[0]["data"]["image/png"] != first   # replaced, not appended
