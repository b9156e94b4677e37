"""Build the datasets shipped inside gradbox (run once; needs scikit-learn).

    python tools/make_datasets.py

Writes ``gradbox/datasets/digits.npz`` (UCI handwritten digits, 1,797 x 64, values 0..16,
labels 0..9) and ``gradbox/datasets/breast_cancer.npz`` (Wisconsin diagnostic breast cancer,
569 x 30, labels 0 = malignant, 1 = benign) with ``np.savez_compressed`` and only plain
numeric/unicode arrays, so that they load with ``allow_pickle=False``.
"""
import os

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

OUT = os.path.join(os.path.dirname(__file__), "..", "gradbox", "datasets")


def main():
    digits = load_digits()
    X = digits.data
    assert X.shape == (1797, 64) and X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    np.savez_compressed(
        os.path.join(OUT, "digits.npz"),
        X=X.astype(np.uint8), y=digits.target.astype(np.uint8),
        feature_names=np.array([f"pixel_{r}_{c}" for r in range(8) for c in range(8)]),
        classes=np.array([str(i) for i in range(10)]),
        source=np.array("UCI ML hand-written digits (optdigits test set) via sklearn.datasets.load_digits"),
    )
    cancer = load_breast_cancer()
    assert cancer.data.shape == (569, 30)
    np.savez_compressed(
        os.path.join(OUT, "breast_cancer.npz"),
        X=cancer.data.astype(np.float64), y=cancer.target.astype(np.uint8),
        feature_names=np.array([str(n) for n in cancer.feature_names]),
        classes=np.array([str(n) for n in cancer.target_names]),
        source=np.array("UCI Breast Cancer Wisconsin (Diagnostic) via sklearn.datasets.load_breast_cancer"),
    )
    for name in ("digits.npz", "breast_cancer.npz"):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
