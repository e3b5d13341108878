"""The feature-space check, the indeterminate rule and the refusal wording (pipeline level)."""

import numpy as np
import torch

from apps.diagnosis.pipeline.core import UNLIKE_TRAINING, refusal_code, refusal_reason, uncertain_between
from apps.diagnosis.pipeline.ood import KindDescriber, MahalanobisCheck
from apps.diagnosis.pipeline.training import risk_coverage, selective_margin


def _clusters(n=400, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ys = np.repeat([0, 1], n // 2)
    means = torch.zeros(2, dim)
    means[1, 0] = 6.0
    x = means[torch.from_numpy(ys)] + torch.randn(n, dim, generator=g) * torch.linspace(0.2, 2.0, dim)
    return x, ys


def test_mahalanobis_refuses_what_lies_outside_the_training_clusters():
    x, ys = _clusters()
    check = MahalanobisCheck.fit(x, ys)
    val, _ = _clusters(seed=1)
    threshold = check.calibrate(val, false_refusal=0.01)
    assert (check.scores(val) > threshold).float().mean() <= 0.01
    # Off the training distribution along a direction with little variance: far by Mahalanobis,
    # although it is close in plain Euclidean distance.
    outside = torch.zeros(5, 32)
    outside[:, 1] = 3.0
    assert (check.scores(outside) > threshold).all()
    # Near a class mean: accepted.
    assert (check.scores(torch.zeros(1, 32)) <= threshold).all()


def test_kind_describer_names_only_a_close_kind():
    g = torch.Generator().manual_seed(0)
    ct = torch.randn(50, 16, generator=g) * 0.1 + torch.eye(16)[0] * 3
    micro = torch.randn(50, 16, generator=g) * 0.1 + torch.eye(16)[1] * 3
    describer = KindDescriber.fit({"head_ct": ct, "microscopy": micro, "not_a_kind": ct})
    assert describer.kinds == ["head_ct", "microscopy"]
    assert describer.describe(ct[0]) == "head_ct"
    assert describer.describe(micro[3]) == "microscopy"
    assert describer.describe(torch.eye(16)[5]) is None  # like nothing seen: no name


def test_indeterminate_when_the_top_two_are_close():
    assert uncertain_between({"normal": 0.1, "bacterial_pneumonia": 0.48, "viral_pneumonia": 0.42}, 0.2) == [
        "bacterial_pneumonia",
        "viral_pneumonia",
    ]
    assert uncertain_between({"normal": 0.05, "bacterial_pneumonia": 0.85, "viral_pneumonia": 0.10}, 0.2) == []


def test_selective_margin_reaches_the_target_on_validation():
    rng = np.random.default_rng(0)
    n = 1000
    ys = rng.integers(0, 3, n)
    confident = rng.random(n) < 0.7
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), ys] = np.where(confident, 0.9, 0.34)  # unsure reads are right ~1/3 of the time
    wrong = (ys + 1) % 3
    probs[np.arange(n), wrong] = np.where(confident, 0.05, 0.6)
    probs /= probs.sum(1, keepdims=True)
    m = selective_margin(probs, ys, 0.95)
    rows = risk_coverage(probs, ys, [0.0, m])
    assert rows[0]["accuracy"] < 0.95 <= rows[1]["accuracy"]
    assert 0.6 < rows[1]["coverage"] < 0.8
    # A floor below the margin the accuracy target needs changes nothing.
    assert selective_margin(probs, ys, 0.95, min_indeterminate=0.02) == m


def test_selective_margin_holds_back_the_least_decisive_reads_even_when_all_are_accurate():
    rng = np.random.default_rng(1)
    n = 1000
    ys = rng.integers(0, 4, n)
    top = rng.uniform(0.4, 0.99, n)  # every read right, with margins spread from small to large
    probs = np.zeros((n, 4))
    probs[:, :] = ((1 - top) / 3)[:, None]
    probs[np.arange(n), ys] = top
    assert selective_margin(probs, ys, 0.98) == 0.0  # accurate everywhere: no margin needed
    m = selective_margin(probs, ys, 0.98, min_indeterminate=0.02)
    held_back = 1 - risk_coverage(probs, ys, [m])[0]["coverage"]
    assert 0.015 <= held_back <= 0.025


def test_refusal_codes_and_words():
    probs = {"chest_xray": 0.2, "brain_mri": 0.1, "unsupported": 0.7}
    assert refusal_code("unsupported", probs, 0.5) == "other_modality"
    assert refusal_code("chest_xray", {"chest_xray": 0.45, "brain_mri": 0.4, "unsupported": 0.15}, 0.5) == (
        "unclear_route"
    )
    assert refusal_code("chest_xray", {"chest_xray": float("nan"), "brain_mri": 0, "unsupported": 0}, 0.5) == (
        "unreadable"
    )
    assert refusal_code("brain_mri", {"chest_xray": 0.01, "brain_mri": 0.98, "unsupported": 0.01}, 0.5) is None
    assert refusal_reason("other_modality", "unsupported", probs, "head_ct") == (
        "This looks like a head CT slice, not a chest X-ray or a brain MRI, so no AI read was made."
    )
    assert "does not look like a chest X-ray or a brain MRI" in refusal_reason(
        "other_modality", "unsupported", probs, None
    )
    assert UNLIKE_TRAINING["brain_mri"].startswith("This looks like a brain image, but unlike the MRIs")
