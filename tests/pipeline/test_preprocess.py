"""Intensity preprocessing: what each method does, and that training and inference apply it alike."""

import numpy as np
import pytest

from apps.diagnosis.pipeline.core import to_model_input
from apps.diagnosis.pipeline.preprocess import apply
from apps.diagnosis.pipeline.training import batch_input, train


def _low_contrast(seed=0, size=64):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = 110 + 12 * np.sin(xx / 5.0) + 8 * (yy > size // 2) + rng.normal(0, 2, (size, size))
    return img.clip(0, 255).astype(np.uint8)


def test_clahe_stretches_a_low_contrast_image_and_keeps_shape_and_dtype():
    img = _low_contrast()
    out = apply("clahe", img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert out.std() > 1.5 * img.std()


def test_zscore_removes_a_scanner_gain_and_keeps_background_black():
    img = np.zeros((64, 64), np.uint8)
    img[16:48, 16:48] = _low_contrast(1, 32) // 2 + 30
    brighter = img.copy()
    brighter[16:48, 16:48] = (img[16:48, 16:48].astype(np.float32) * 1.8).clip(0, 255).astype(np.uint8)
    a, b = apply("zscore", img), apply("zscore", brighter)
    assert (a[:16] == 0).all() and (b[:16] == 0).all()
    # the same anatomy at two gains lands on (nearly) the same normalised grey levels
    assert np.abs(a.astype(int) - b.astype(int))[16:48, 16:48].mean() < 4
    assert np.abs(img.astype(int) - brighter.astype(int))[16:48, 16:48].mean() > 30


def test_stacks_are_processed_image_by_image():
    stack = np.stack([_low_contrast(0), _low_contrast(1)])
    out = apply("clahe", stack)
    assert out.shape == stack.shape
    assert np.array_equal(out[1], apply("clahe", stack[1]))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing"):
        apply("gamma", _low_contrast())


@pytest.mark.parametrize("method", ["none", "clahe", "zscore"])
def test_inference_input_matches_training_input(method):
    """The worker's tensor for a model-size image equals the training loop's tensor."""
    img = _low_contrast(2, 48)
    trained = batch_input(apply(method, img[None]), 48)
    inferred = to_model_input(img.astype(np.float32) / 255.0, 48, method)
    assert trained.shape == inferred.shape == (1, 1, 48, 48)
    assert np.allclose(trained.numpy(), inferred.numpy(), atol=1e-5)
    if method != "none":
        assert not np.allclose(inferred.numpy(), to_model_input(img.astype(np.float32) / 255.0, 48).numpy())


def test_training_refuses_unknown_preprocessing_and_preprocessing_the_router(tmp_path):
    with pytest.raises(ValueError, match="unknown preprocessing"):
        train("chest", tmp_path, tmp_path / "w", preprocessing="gamma")
    with pytest.raises(ValueError, match="router"):
        train("router", tmp_path, tmp_path / "w", preprocessing="clahe")
