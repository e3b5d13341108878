"""Grad-CAM from the forward pass.

For the specialists' target layer (the last conv block, ``bn2``: conv_head + BN + ReLU6) the
network ends in global average pooling and one linear layer, so the class score is
``y_c = sum_k W[c,k] * mean(A_k) + b_c``. Grad-CAM's channel weight is the spatial mean of
``dy_c/dA_k`` = ``W[c,k] / (H*W)``: the map needs no backward pass. ``tests/pipeline`` proves
this equals pytorch-grad-cam's ``GradCAM`` on the same layer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_activation_map(features: torch.Tensor, classifier_weight: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM map (h×w, float32, ReLU'd, min-max normalised to [0, 1]) for one image.

    ``features``: (1, K, h, w) activations of the target layer; ``classifier_weight``: (C, K).
    """
    h, w = features.shape[-2:]
    weights = classifier_weight[class_index].float() / float(h * w)
    cam = torch.einsum("k,khw->hw", weights, features[0].float()).clamp_min(0)
    return normalise(cam.detach().numpy())


def normalise(cam: np.ndarray) -> np.ndarray:
    """Min-max scaling exactly as pytorch-grad-cam's ``scale_cam_image`` does (before resizing)."""
    cam = cam - np.min(cam)
    return (cam / (1e-7 + np.max(cam))).astype(np.float32)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    t = torch.from_numpy(cam)[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


#: The focal-box criterion (docs/models/README.md): the "hot" region is where the heatmap reaches
#: ``HOT_LEVEL`` of its maximum. A box is drawn only when that region is small and one piece.
HOT_LEVEL = 0.5
#: ... the hot region covers at most this share of the image (a box around both lungs tells a
#: doctor nothing) ...
MAX_HOT_AREA = 0.15
#: ... and its largest connected piece holds at least this share of the hot pixels.
MIN_MAIN_PIECE = 0.8


def focal_box(heatmap: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), in heatmap pixels, of the heatmap's one focal region, or None
    when the heatmap is not focal (flat, spread over a large area, or split into several places)."""
    import cv2

    if heatmap.size == 0 or not np.isfinite(heatmap).all() or float(heatmap.max()) <= 0:
        return None
    hot = (heatmap >= HOT_LEVEL * float(heatmap.max())).astype(np.uint8)
    hot_pixels = int(hot.sum())
    if hot_pixels == 0 or hot_pixels > MAX_HOT_AREA * heatmap.size:
        return None
    count, _, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    main = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[main, cv2.CC_STAT_AREA] < MIN_MAIN_PIECE * hot_pixels:
        return None
    x, y, w, h = (int(v) for v in stats[main, :4])
    return x, y, x + w, y + h


def _jet_lut() -> np.ndarray:
    x = np.linspace(0, 1, 256)
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], 1) * 255).astype(np.uint8)


JET = _jet_lut()


def _blend_lut(alpha: float = 0.45) -> np.ndarray:
    """(grey level, heat level) → RGB, precomputed so blending a large image is one indexing pass."""
    grey = np.arange(256, dtype=np.float32)[:, None, None]
    heat = np.arange(256, dtype=np.float32) / 255
    a = (alpha * np.sqrt(heat))[None, :, None]  # cold regions stay mostly see-through
    return (grey * (1 - a) + JET.astype(np.float32)[None, :, :] * a).round().astype(np.uint8)


BLEND = _blend_lut()
_BLEND_FLAT = BLEND.reshape(-1, 3)


def overlay_rgb(gray: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Blend the jet-coloured heatmap over the greyscale image (both H×W in [0, 1]) → uint8 RGB."""
    g = (np.clip(gray, 0, 1) * 255).astype(np.intp)
    h = (np.clip(heatmap, 0, 1) * 255).astype(np.intp)
    # One flat lookup (grey * 256 + heat): 4× faster than indexing the 2-D table with two arrays.
    return np.take(_BLEND_FLAT, (g << 8) | h, axis=0)
