"""An image whose decoded pixels are not all finite (a DICOM whose rescale slope is NaN or whose
values overflow to infinity) is refused as ``unreadable`` before any model runs: it is never
routed on NaN probabilities."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from apps.diagnosis.pipeline.core import TwoStagePipeline
from tests.diagnosis.helpers import write_untrained_models

from .test_decode_dicom import _dicom


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_untrained_models(root)  # its router says chest_xray for everything it is shown
    return TwoStagePipeline.from_directory(root, backend="eager")


def _with(data: bytes, **tags) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in tags.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


GRADIENT = np.tile(np.linspace(0, 4000, 96, dtype=np.float32), (96, 1))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize(
    "tags",
    [
        {"RescaleSlope": "NaN", "RescaleIntercept": 0},
        {"RescaleSlope": "1e38", "RescaleIntercept": 0},  # float32 overflow: infinity
        {"WindowCenter": "NaN", "WindowWidth": 400},
    ],
    ids=["nan-slope", "overflowing-slope", "nan-window-centre"],
)
def test_non_finite_pixels_are_refused_before_routing(pipe, monkeypatch, tags):
    def must_not_route(pixels):
        raise AssertionError("the router ran on non-finite pixels")

    monkeypatch.setattr(pipe, "route", must_not_route)
    result = pipe.run(_with(_dicom(GRADIENT), **tags))
    assert result.refused and result.refusal_code == "unreadable"
    assert result.route == "unsupported" and result.route_probabilities == {}
    assert result.label is None and result.task is None and result.overlay_png is None
    assert result.refusal_reason == "The pixel values of this image are not finite numbers, so no AI read was made."
    assert result.image_size == (96, 96) and "total" in result.timings_ms


def test_the_same_image_with_finite_values_is_routed(pipe):
    result = pipe.run(_dicom(GRADIENT))
    assert not result.refused and result.route == "chest_xray"
    assert all(np.isfinite(p) for p in result.route_probabilities.values())
