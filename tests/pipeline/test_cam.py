"""The forward-pass Grad-CAM equals pytorch-grad-cam's GradCAM on the same layer."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from apps.diagnosis.pipeline.artifact import build_model
from apps.diagnosis.pipeline.cam import class_activation_map, focal_box, overlay_rgb, upsample


@pytest.mark.parametrize("class_index", [0, 2])
def test_forward_cam_equals_pytorch_grad_cam(class_index):
    torch.manual_seed(0)
    model = build_model(3).eval()
    x = torch.randn(1, 1, 96, 96)
    with torch.no_grad():
        features = model.forward_features(x)
    ours = upsample(class_activation_map(features, model.get_classifier().weight, class_index), 96, 96)
    with GradCAM(model=model, target_layers=[model.bn2]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])[0]
    # pytorch-grad-cam resizes with OpenCV; compare before resizing differences matter: same map, same scale
    assert ours.shape == theirs.shape
    corr = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    assert corr > 0.995, corr
    assert np.abs(ours - theirs).mean() < 0.02


def test_cam_map_matches_before_resizing_exactly():
    """At feature resolution the two maps are the same numbers (up to float error)."""
    torch.manual_seed(1)
    model = build_model(4).eval()
    x = torch.randn(1, 1, 64, 64)
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    logits[0, 1].backward()
    weights = features.grad.mean(dim=(2, 3))[0]  # Grad-CAM's channel weights
    reference = torch.relu((weights[:, None, None] * features[0]).sum(0)).detach().numpy()
    reference = (reference - reference.min()) / (reference.max() - reference.min() + 1e-7)
    ours = class_activation_map(features.detach(), model.get_classifier().weight, 1)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_focal_box_and_overlay():
    heat = np.zeros((50, 80), np.float32)
    heat[10:20, 30:45] = 1.0
    assert focal_box(heat) == (30, 10, 45, 20)
    assert focal_box(np.zeros((5, 5), np.float32)) is None
    rgb = overlay_rgb(np.full((50, 80), 0.5, np.float32), heat)
    assert rgb.shape == (50, 80, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[15, 35], rgb[40, 5])  # the hot region is coloured


def test_no_box_around_both_lungs():
    """Two separate hot regions (left and right lung): no box, although each is small."""
    heat = np.zeros((100, 100), np.float32)
    heat[30:60, 15:30] = 1.0
    heat[30:60, 70:85] = 0.9
    assert focal_box(heat) is None
    heat[30:60, 70:85] = 0.2  # one lung only: a box around it
    assert focal_box(heat) == (15, 30, 30, 60)


def test_no_box_when_the_heat_is_spread_out():
    heat = np.zeros((100, 100), np.float32)
    heat[10:90, 10:90] = 1.0  # one region, but 64 % of the image
    assert focal_box(heat) is None
    ramp = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (100, 1))
    assert focal_box(ramp) is None  # half the image above half the maximum
    assert focal_box(np.full((10, 10), np.nan, np.float32)) is None
