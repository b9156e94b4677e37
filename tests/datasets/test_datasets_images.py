"""Datasets keep their image shape when asked (``flatten=False``) and say it (``image_shape``)."""
import os

import numpy as np
import pytest

from gradbox import datasets
from gradbox.datasets import _files

from .test_datasets import _mnist


def test_digits_as_images():
    flat = datasets.load("digits")
    images = datasets.load("digits", flatten=False)
    assert flat.X.shape == (1797, 64) and flat.image_shape == (1, 8, 8)  # the default stays flat
    assert images.X.shape == (1797, 1, 8, 8) and images.image_shape == (1, 8, 8)
    assert images.X.dtype == np.float32 and images.X.flags.c_contiguous
    assert images.n_features == 64 and images.n_samples == 1797
    np.testing.assert_array_equal(images.X.reshape(1797, 64), flat.X)
    np.testing.assert_array_equal(images.y, flat.y)
    # pixel (row 0, column 3) of the first digit is feature pixel_0_3
    assert flat.feature_names[3] == "pixel_0_3" and images.X[0, 0, 0, 3] == flat.X[0, 3]


def test_tabular_data_has_no_image_shape_and_ignores_flatten():
    for name in ("breast_cancer", "spirals"):
        a, b = datasets.load(name), datasets.load(name, flatten=False)
        assert a.image_shape is None and b.image_shape is None
        np.testing.assert_array_equal(a.X, b.X)


def test_course_hdf5_as_nchw_images(shared_data):
    pytest.importorskip("h5py")
    path = os.path.join(shared_data, "train_catvnoncat.h5")
    flat = datasets.load(path)
    images = datasets.load(path, flatten=False)
    assert flat.X.shape == (209, 12288) and flat.image_shape == (3, 64, 64)
    assert images.X.shape == (209, 3, 64, 64) and images.test[0].shape == (50, 3, 64, 64)
    assert images.image_shape == (3, 64, 64) and images.X.flags.c_contiguous
    # NOTE: the flat rows keep the course's (height, width, channels) order, as 0.1 gave them
    np.testing.assert_array_equal(images.X.transpose(0, 2, 3, 1).reshape(209, -1), flat.X)
    np.testing.assert_array_equal(images.test[0].transpose(0, 2, 3, 1).reshape(50, -1), flat.test[0])
    import h5py

    with h5py.File(path) as f:
        raw = f["train_set_x"][()]
    np.testing.assert_allclose(images.X[7, 2, 10, 20], raw[7, 10, 20, 2] / 255, rtol=1e-6)  # channel 2 = blue


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_idx_as_images(tmp_path, gz):
    path = _mnist(tmp_path, gz)
    flat = datasets.load(path)
    images = datasets.load(path, flatten=False)
    assert flat.image_shape == images.image_shape == (1, 28, 28)
    assert images.X.shape == (12, 1, 28, 28) and images.test[0].shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(images.X.reshape(12, -1), flat.X)
    raw = _files.read_idx_array(path)
    np.testing.assert_allclose(images.X[3, 0], raw[3] / 255, rtol=1e-6)


def test_npz_images_as_stored(tmp_path, rng):
    X = rng.random((6, 3, 5, 4))
    np.savez(tmp_path / "img.npz", X=X, y=np.arange(6) % 2, X_test=rng.random((2, 3, 5, 4)), y_test=[0, 1])
    ds = datasets.load(tmp_path / "img.npz", flatten=False, dtype=np.float64)
    assert ds.X.shape == (6, 3, 5, 4) and ds.image_shape == (3, 5, 4) and ds.test[0].shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(ds.X, X)
    flat = datasets.load(tmp_path / "img.npz", dtype=np.float64)
    assert flat.X.shape == (6, 60) and flat.image_shape == (3, 5, 4)
    np.savez(tmp_path / "gray.npz", X=rng.random((4, 5, 5)), y=[0, 1, 0, 1])
    assert datasets.load(tmp_path / "gray.npz", flatten=False).X.shape == (4, 1, 5, 5)
    np.savez(tmp_path / "tab.npz", X=rng.random((4, 3)), y=[0, 1, 0, 1])
    tab = datasets.load(tmp_path / "tab.npz", flatten=False)
    assert tab.X.shape == (4, 3) and tab.image_shape is None


def test_images_whose_test_set_differs_in_shape_are_refused(tmp_path, rng):
    np.savez(tmp_path / "img.npz", X=rng.random((6, 3, 5, 4)), y=np.arange(6) % 2, X_test=rng.random((2, 3, 4, 5)),
             y_test=[0, 1])
    with pytest.raises(ValueError, match=r"X_test: expected samples of shape \(3, 5, 4\) \(as X\), received shape "
                                         r"\(2, 3, 4, 5\)"):
        datasets.load(tmp_path / "img.npz", flatten=False)


def test_flatten_must_be_a_bool():
    with pytest.raises(TypeError, match=r"flatten: expected True or False, received 'no'"):
        datasets.load("digits", flatten="no")


@pytest.mark.parametrize("name", ["gradbox.datasets", "gradbox.datasets._limits"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
