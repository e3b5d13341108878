"""Optional intensity preprocessing, applied to the model-size greyscale image.

Each artifact names its method in ``card["preprocessing_method"]`` (absent means ``"none"``), and
training and inference both call :func:`apply` on the same uint8 model-size image, so the two
can never drift apart. ``benchmarks/preprocessing.py`` measures, on validation data carved from
``train/``, whether a method helps; only a method that helps is used for shipped weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _none(img: np.ndarray) -> np.ndarray:
    return img


def _clahe(img: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (8×8 tiles, clip 2.0), as for X-rays."""
    import cv2

    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img)


def _zscore(img: np.ndarray) -> np.ndarray:
    """Per-image z-score over the foreground (pixels above the background), mapped ±3 SD → 0..255.

    The usual MRI intensity normalisation: scanners and sequences put tissue at arbitrary grey
    levels, so each slice is rescaled by its own foreground statistics.
    """
    x = img.astype(np.float32)
    fg = x[x > 10]
    if fg.size < 64:  # (almost) blank: nothing to normalise
        return img
    z = (x - fg.mean()) / max(float(fg.std()), 1.0)
    out = np.clip((z + 3.0) / 6.0 * 255.0, 0, 255)
    out[x <= 10] = 0  # keep the background black
    return out.astype(np.uint8)


METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"none": _none, "clahe": _clahe, "zscore": _zscore}
DESCRIPTIONS = {
    "none": "",
    "clahe": "CLAHE (clip 2.0, 8×8 tiles) on the resized image",
    "zscore": "per-image foreground z-score (±3 SD → full range) on the resized image",
}


def apply(method: str, images: np.ndarray) -> np.ndarray:
    """``method`` on one uint8 image (H, W) or a stack (N, H, W); returns uint8 of the same shape."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown preprocessing {method!r}; choose from {', '.join(METHODS)}") from None
    if method == "none":
        return images
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim == 2:
        return fn(images)
    return np.stack([fn(im) for im in images])
