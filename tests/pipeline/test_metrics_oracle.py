"""The metrics the model cards publish, checked against scikit-learn as the oracle."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from apps.diagnosis.pipeline.metrics import classification_metrics, expected_calibration_error

LABELS = ["normal", "bacterial_pneumonia", "viral_pneumonia"]


@pytest.fixture(params=[0, 1, 2])
def predictions(request):
    rng = np.random.default_rng(request.param)
    n = 500
    ys = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), ys] += rng.uniform(0, 3, n)  # better than chance, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return ys, probs


def test_accuracy_macro_f1_per_class_and_confusion_match_scikit_learn(predictions):
    ys, probs = predictions
    pred = probs.argmax(1)
    ours = classification_metrics(ys, probs, LABELS)
    assert ours["accuracy"] == pytest.approx(accuracy_score(ys, pred), abs=1e-4)
    assert ours["macro_f1"] == pytest.approx(f1_score(ys, pred, average="macro"), abs=1e-4)
    assert ours["confusion_matrix"] == confusion_matrix(ys, pred, labels=[0, 1, 2]).tolist()
    precision = precision_score(ys, pred, average=None, labels=[0, 1, 2], zero_division=0)
    recall = recall_score(ys, pred, average=None, labels=[0, 1, 2], zero_division=0)
    for i, name in enumerate(LABELS):
        assert ours["per_class"][name]["precision"] == pytest.approx(precision[i], abs=1e-4)
        assert ours["per_class"][name]["recall"] == pytest.approx(recall[i], abs=1e-4)


def test_ece_matches_a_calibration_curve_from_scikit_learn(predictions):
    """Top-label ECE: the count-weighted gap between accuracy and confidence per equal-width bin,
    with scikit-learn's calibration curve giving each bin's accuracy and mean confidence."""
    ys, probs = predictions
    confidence = probs.max(1)
    correct = (probs.argmax(1) == ys).astype(int)
    bins = 15
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.clip(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], confidence), 0, bins - 1))
    counts = counts[counts > 0]
    oracle = float(np.sum(counts / len(ys) * np.abs(accuracy - mean_confidence)))
    assert expected_calibration_error(ys, probs, bins) == pytest.approx(oracle, abs=1e-6)
