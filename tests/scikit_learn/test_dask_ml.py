"""dask-ml's ParallelPostFit around LeNet5Classifier: predict over a dask array, chunk by
chunk, gives the shipped model's own labels."""

from __future__ import annotations

import numpy as np
import pytest

from lenet_fast import LeNet5, load_mnist
from lenet_fast.sklearn import LeNet5Classifier


@pytest.mark.slow
def test_parallel_post_fit_predicts_the_models_labels(mnist_dir):
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit

    _, _, x, y = load_mnist(mnist_dir)
    flat = x.reshape(-1, 784)
    clf = ParallelPostFit(LeNet5Classifier(pretrained="mnist-distorted", passes=0))
    clf.fit(flat[:100], y[:100])
    got = clf.predict(da.from_array(flat, chunks=(2000, 784))).compute()
    assert np.array_equal(got, LeNet5.pretrained().predict(x))
