"""`mrl_keras.training.corruptions`: seeded image corruptions, checked against NumPy loops."""

import numpy as np
import pytest

from mrl_keras.training.corruptions import CORRUPTIONS, corrupt, occlusion, stroke_width


def _images(n=3, side=9):
    rng = np.random.default_rng(0)
    return rng.random((n, side, side, 1)).astype(np.float32)


def test_each_corruption_keeps_shape_range_and_is_seeded():
    x = _images()
    for name in CORRUPTIONS:
        a, b = corrupt(x, name, seed=1), corrupt(x, name, seed=1)
        assert a.shape == x.shape and a.dtype == x.dtype
        assert a.min() >= 0.0 and a.max() <= 1.0
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, x), name
    assert not np.array_equal(corrupt(x, "noise", 1), corrupt(x, "noise", 2))
    np.testing.assert_array_equal(corrupt(x, "clean"), x)


def test_blur_and_stroke_width_match_a_loop():
    x = _images(2, 6)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    box = np.zeros_like(x)
    dil = np.zeros_like(x)
    ero = np.zeros_like(x)
    for i in range(6):
        for j in range(6):
            window = padded[:, i : i + 3, j : j + 3]
            box[:, i, j] = window.mean(axis=(1, 2))
            dil[:, i, j] = window.max(axis=(1, 2))
            ero[:, i, j] = window.min(axis=(1, 2))
    np.testing.assert_allclose(corrupt(x, "blur"), box, rtol=1e-6)
    np.testing.assert_array_equal(stroke_width(x, 1), dil)
    np.testing.assert_array_equal(stroke_width(x, -1), ero)


def test_occlusion_blacks_out_one_square_per_image():
    x = np.ones((4, 20, 20, 1), np.float32)
    out = occlusion(x, fraction=0.35, seed=3)
    for img in out[..., 0]:
        rows, cols = np.where(img == 0.0)
        assert len(rows) == 7 * 7
        assert rows.max() - rows.min() == 6 and cols.max() - cols.min() == 6


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown corruption 'fog'"):
        corrupt(_images(), "fog")
    with pytest.raises(ValueError, match="float images of shape"):
        corrupt(np.zeros((3, 3), np.float32), "blur")


def test_strength_after_an_at_sign_matches_the_functions():
    from mrl_keras.training.corruptions import blur, gaussian_noise, parse_corruption

    x = _images()
    np.testing.assert_array_equal(corrupt(x, "noise@0.05", 3), gaussian_noise(x, 0.05, seed=3))
    np.testing.assert_array_equal(corrupt(x, "blur@2"), blur(x, 2))
    np.testing.assert_array_equal(corrupt(x, "occlusion@0.2", 3), occlusion(x, 0.2, seed=3))
    np.testing.assert_array_equal(corrupt(x, "noise", 3), gaussian_noise(x, 0.2, seed=3))
    assert parse_corruption("blur@2") == ("blur", 2)
    assert parse_corruption("stroke_thin") == ("stroke_thin", None)


@pytest.mark.parametrize(
    "name, match",
    [
        ("noise@0", r"number sigma in \(0.0, 1.0\] after 'noise@'"),
        ("noise@x", "Received: 'noise@x'"),
        ("blur@2.5", "an integer window size"),
        ("occlusion@1.5", "fraction of the side"),
        ("stroke_thin@2", "'stroke_thin' takes no strength"),
        ("fog@1", "Unknown corruption 'fog@1'"),
    ],
)
def test_bad_strengths_name_the_problem(name, match):
    with pytest.raises(ValueError, match=match):
        corrupt(_images(), name)
