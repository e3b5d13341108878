"""Out-of-distribution images for the router: what it must refuse.

Built offline from scikit-image sample images, pydicom's bundled test files (CT, US, NM, SEG,
secondary captures — MR files are left out, some may be head slices), rendered documents and UI
screenshots, noise, gradients, blanks and tiny magnified crops of real images. ``heldout=True`` draws
from sources the router never trains on (other photos, other DICOM files, other seeds): the
benchmark measures refusal on those.
"""

from __future__ import annotations

import glob
import io
import logging
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SKIMAGE_TRAIN = [
    "binary_blobs",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "clock",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "text",
    "shepp_logan_phantom",
]
SKIMAGE_HELDOUT = ["astronaut", "chelsea", "coffee", "rocket"]
DICOM_TRAIN = [
    "examples_palette.dcm",
    "examples_ybr_color.dcm",
    "SC_rgb_jpeg_dcmd.dcm",
    "image_dfl.dcm",
    "SC_rgb.dcm",
    "SC_rgb_rle.dcm",
    "rtdose.dcm",
    "ExplVR_BigEnd.dcm",
]
DICOM_HELDOUT = ["CT_small.dcm", "examples_rgb_color.dcm", "JPEG-lossy.dcm", "liver_1frame.dcm"]
WORDS = (
    "patient report discharge summary invoice total amount date signature laboratory results "
    "glucose sodium potassium normal range referral appointment clinic ward pharmacy dose tablet "
    "the of and to in for with on by from at as an be this that"
).split()

_log = logging.getLogger(__name__)


def _gray(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-6) * 255).astype(np.uint8)


def skimage_sources(names):
    import skimage.data as d

    out = []
    for n in names:
        try:
            out.append(_gray(getattr(d, n)()))
        except Exception as exc:  # noqa: BLE001 - optional sample images
            _log.debug("skimage sample %s unavailable: %s", n, exc)
    return out


def dicom_sources(names):
    import pydicom
    import pydicom.data

    root = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    out = []
    for n in names:
        for f in glob.glob(os.path.join(root, "**", n), recursive=True):
            try:
                ds = pydicom.dcmread(f)
                a = ds.pixel_array
                if a.ndim == 4 or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
                    a = a[a.shape[0] // 2]
                if ds.get("PhotometricInterpretation", "").startswith("YBR"):
                    from pydicom.pixels import convert_color_space

                    a = convert_color_space(a, ds.PhotometricInterpretation, "RGB")
                out.append(_gray(a))
            except Exception as exc:  # noqa: BLE001 - some files need decoders we don't have
                _log.debug("pydicom test file %s unreadable: %s", n, exc)
            break
    return out


def _crop(rng, img, size, min_area=0.2, max_area=1.0):
    h, w = img.shape
    area = rng.uniform(min_area, max_area)
    ch, cw = max(8, int(h * np.sqrt(area))), max(8, int(w * np.sqrt(area)))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    im = Image.fromarray(img[y : y + ch, x : x + cw])
    if rng.random() < 0.5:
        im = im.rotate(float(rng.uniform(-30, 30)), fillcolor=int(rng.integers(0, 256)))
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR))


def _text_page(rng, size):
    w = int(rng.integers(300, 800))
    h = int(w * rng.uniform(0.7, 1.5))
    bg = int(rng.integers(200, 256))
    fg = int(rng.integers(0, 80))
    if rng.random() < 0.2:
        bg, fg = fg, bg
    im = Image.new("L", (w, h), bg)
    dr = ImageDraw.Draw(im)
    fs = int(rng.integers(10, 28))
    font = ImageFont.load_default(size=fs)
    y = int(rng.integers(5, 40))
    while y < h - fs:
        n = int(rng.integers(3, 12))
        dr.text((int(rng.integers(5, 40)), y), " ".join(rng.choice(WORDS, n)), fill=fg, font=font)
        y += int(fs * rng.uniform(1.2, 2.0))
    if rng.random() < 0.4:
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            dr.rectangle([x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(10, h // 3))], outline=fg)
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR))


def _ui(rng, size):
    w, h = int(rng.integers(400, 1200)), int(rng.integers(300, 900))
    im = Image.new("L", (w, h), int(rng.integers(180, 256)))
    dr = ImageDraw.Draw(im)
    dr.rectangle([0, 0, w, int(rng.integers(20, 60))], fill=int(rng.integers(0, 120)))
    for _ in range(int(rng.integers(5, 25))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, 300)), y0 + int(rng.integers(10, 120))
        dr.rectangle([x0, y0, x1, y1], fill=int(rng.integers(0, 256)), outline=int(rng.integers(0, 256)))
        dr.text(
            (x0 + 4, y0 + 2),
            " ".join(rng.choice(WORDS, 2)),
            fill=int(rng.integers(0, 256)),
            font=ImageFont.load_default(size=int(rng.integers(10, 20))),
        )
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR))


def _noise(rng, size):
    kind = rng.integers(0, 6)
    if kind == 0:
        return rng.integers(0, 256, (size, size), dtype=np.uint8)
    if kind == 1:
        a = np.clip(rng.normal(128, rng.uniform(10, 80), (size, size)), 0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 6)))))
    if kind == 2:
        return np.full((size, size), int(rng.integers(0, 256)), np.uint8)
    if kind == 3:
        t = np.linspace(0, 1, size)
        g = np.add.outer(t * rng.uniform(-1, 1), t * rng.uniform(-1, 1))
        return _gray(g + rng.normal(0, 0.02, g.shape))
    if kind == 4:
        yy, xx = np.mgrid[:size, :size] / size
        r = np.hypot(yy - rng.random(), xx - rng.random())
        return _gray(np.cos(r * rng.uniform(2, 30)))
    im = Image.new("L", (size, size), int(rng.integers(0, 256)))
    dr = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 15))):
        x0, y0 = rng.integers(0, size, 2)
        shape = [int(x0), int(y0), int(x0 + rng.integers(5, size)), int(y0 + rng.integers(5, size))]
        (dr.ellipse if rng.random() < 0.5 else dr.rectangle)(shape, fill=int(rng.integers(0, 256)))
    return np.asarray(im)


def generate(n: int, size: int, seed: int, heldout: bool, real_pool=None):
    """n negatives of size×size uint8. heldout=True uses sources never used for training."""
    rng = np.random.default_rng(seed)
    photos = skimage_sources(SKIMAGE_HELDOUT if heldout else SKIMAGE_TRAIN)
    dicoms = dicom_sources(DICOM_HELDOUT if heldout else DICOM_TRAIN)
    out, kinds = [], []
    for _ in range(n):
        r = rng.random()
        if r < 0.35 and photos:
            out.append(_crop(rng, photos[rng.integers(len(photos))], size))
            kinds.append("photo")
        elif r < 0.45 and dicoms:
            out.append(_crop(rng, dicoms[rng.integers(len(dicoms))], size, 0.3))
            kinds.append("dicom")
        elif r < 0.62:
            out.append(_text_page(rng, size))
            kinds.append("document")
        elif r < 0.75:
            out.append(_ui(rng, size))
            kinds.append("screenshot")
        elif r < 0.93:
            out.append(_noise(rng, size))
            kinds.append("synthetic")
        elif real_pool is not None and len(real_pool):
            out.append(_crop(rng, real_pool[rng.integers(len(real_pool))], size, 0.01, 0.06))
            kinds.append("tiny-crop")
        else:
            out.append(_noise(rng, size))
            kinds.append("synthetic")
    return np.stack(out), kinds


def jpeg_roundtrip(a: np.ndarray, q: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
