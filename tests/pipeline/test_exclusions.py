"""The exclusion list: images of a public dataset that are not what their folder says (head CT
slices inside brain_mri/). Specialists never see them; the router learns them as negatives."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from apps.diagnosis.pipeline.exclusions import DEFAULT_EXCLUSIONS, Exclusions
from apps.diagnosis.pipeline.training import TASK_LABELS, _router_data, _router_test, evaluate, train

HEADER = "dataset,split,file,kind,reason\n"
CT_VALUE = 250  # the listed images are uniformly this bright; no other image is


def _image(path, value, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).normal(0, 3, (40, 40))
    Image.fromarray((value + noise).clip(0, 255).astype("uint8")).save(path)


@pytest.fixture
def datasets(tmp_path):
    """chest_xray and brain_mri train/test (6 per class), other_modalities; two brain images are CT."""
    root = tmp_path / "datasets"
    for sub, task in (("chest_xray", "chest"), ("brain_mri", "brain")):
        for split in ("train", "test"):
            for c, label in enumerate(TASK_LABELS[task]):
                for i in range(6):
                    _image(root / sub / split / label / f"{split}_{label}_{i}.png", 30 + 40 * c, i)
    for name in ("train_no_tumor_0.png", "test_no_tumor_0.png", "train_glioma_5.png"):
        _image(next(root.glob(f"brain_mri/*/*/{name}")), CT_VALUE, 0)
    for split in ("train", "val"):
        for kind in ("head_ct", "microscopy"):
            for i in range(3):
                _image(root / "other_modalities" / split / kind / f"{kind}_{i}.png", 200, i)
    listed = tmp_path / "exclusions.csv"
    listed.write_text(
        "# found by eye\n"
        + HEADER
        + 'brain_mri,train,train_no_tumor_0.png,head_ct,"head CT, not MRI"\n'
        + 'brain_mri,train,train_glioma_5.png,head_ct,"head CT, not MRI"\n'
        + 'brain_mri,test,test_no_tumor_0.png,head_ct,"head CT, not MRI"\n'
    )
    return root, listed


def test_the_shipped_list_loads_and_names_brain_mri_head_ct():
    exclusions = Exclusions.load(DEFAULT_EXCLUSIONS)
    assert exclusions.rows and len(exclusions.sha256) == 64
    assert {(r["dataset"], r["kind"]) for r in exclusions.rows} == {("brain_mri", "head_ct")}
    assert exclusions.kind("brain_mri", "Te-noTr_0000.jpg") == "head_ct"
    assert all(r["reason"] for r in exclusions.rows)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset,file,kind\nbrain_mri,a.jpg,head_ct\n", "must have the columns"),
        (HEADER + "brain_ct,train,a.jpg,head_ct,x\n", "row 2: unknown dataset 'brain_ct'"),
        (HEADER + "brain_mri,train,a.jpg,head_xray,x\n", "unknown kind 'head_xray'"),
        (HEADER + "brain_mri,train,a.jpg,head_ct,\n", "a file and a reason are required"),
    ],
)
def test_a_bad_list_is_refused_with_the_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        Exclusions.load(path)
    with pytest.raises(ValueError, match="does not exist"):
        Exclusions.load(tmp_path / "missing.csv")


def test_router_takes_listed_images_as_negatives_with_the_same_validation_draw(datasets):
    root, listed = datasets
    cfg = {"seed": 0, "positives_per_class": 16, "negatives": 12, "min_per_kind": 2, "exclude_kinds": ""}
    plain = _router_data(root, 32, cfg)
    relabelled = _router_data(root, 32, cfg, Exclusions.load(listed))

    def is_ct(xs):
        return np.abs(xs.astype(float).mean(axis=(1, 2)) - CT_VALUE) < 10

    for xs, ys in ((plain[0], plain[1]), (plain[2], plain[3])):  # without the list: CT is "brain MRI"
        assert set(ys[is_ct(xs)].tolist()) <= {1}
    ct_train, ct_val = is_ct(relabelled[0]), is_ct(relabelled[2])
    assert ct_train.sum() + ct_val.sum() == 2, "both listed train images, picked by the draw or not"
    assert set(relabelled[1][ct_train].tolist()) | set(relabelled[3][ct_val].tolist()) == {2}
    # the same validation images, only the listed ones relabelled
    assert np.array_equal(plain[2], relabelled[2])
    assert np.array_equal(np.where(is_ct(plain[2]), 2, plain[3]), relabelled[3])
    # a leave-one-kind-out fold without head CT sees no listed image at all
    fold = _router_data(root, 32, {**cfg, "exclude_kinds": "head_ct"}, Exclusions.load(listed))
    assert not is_ct(fold[0]).any() and not is_ct(fold[2]).any()
    # in the test split the listed image is a negative
    xs, ys = _router_test(root, 32, Exclusions.load(listed))
    real = slice(0, 3 * 6 + 4 * 6)  # the test splits' images; generated negatives follow
    assert ys[real][is_ct(xs[real])].tolist() == [2] and (ys[real] < 2).sum() == 3 * 6 + 4 * 6 - 1


def test_brain_specialist_never_sees_listed_images_and_the_card_says_which_list(datasets, tmp_path):
    root, listed = datasets
    logs: list[str] = []
    kwargs = dict(epochs=1, img_size=32, batch_size=4, pretrained=None, bf16=False, log=logs.append)
    out = train("brain", root / "brain_mri", tmp_path / "w", exclusions=listed, **kwargs)
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["exclusions"] == {
        "file": "exclusions.csv",
        "sha256": Exclusions.load(listed).sha256,
        "images": 3,
    }
    counts = re.search(r"train (\d+), validation (\d+)", logs[0])
    assert int(counts[1]) + int(counts[2]) == 4 * 6 - 2, "the two listed train images are left out"
    assert card["test_metrics"]["n"] == 4 * 6 - 1
    out = train("brain", root / "brain_mri", tmp_path / "w", exclusions="", **kwargs)
    without = json.loads((out / "card.json").read_text())
    assert without["training"]["exclusions"] == "none" and without["test_metrics"]["n"] == 4 * 6


def test_evaluate_counts_listed_images_as_the_trainer_does(datasets, tmp_path):
    root, listed = datasets
    kwargs = dict(epochs=1, img_size=32, batch_size=4, pretrained=None, bf16=False, log=lambda *_: None)
    out = train("brain", root / "brain_mri", tmp_path / "w", exclusions=listed, **kwargs)
    assert evaluate(out, root / "brain_mri", exclusions=listed)["n"] == 4 * 6 - 1
    assert evaluate(out, root / "brain_mri", exclusions=None)["n"] == 4 * 6
