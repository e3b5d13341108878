"""Feature-space checks: does an image look like what a model was trained on?

Softmax confidence is not an out-of-distribution test: a network trained on three classes puts a
lung CT slice in one of them with p > 0.99. So every specialist carries a second, independent check
on its own penultimate embedding (the global average of the Grad-CAM layer, which the forward pass
already returns, so the check costs one small matrix product):

* **Class-conditional Mahalanobis distance with a tied, shrunk covariance** (Lee et al. 2018,
  "A Simple Unified Framework for Detecting Out-of-Distribution Samples"). The class means and the
  covariance are fitted on the specialist's training images only (clean, plus one augmented copy
  of each so that ordinary differences in exposure and sharpness between hospitals stay inside);
  the score is the distance to the nearest class mean, divided by the dimension.
* **The threshold** is the score that refuses a fixed share (``false_refusal``) of the clean
  validation images carved from ``train/``. An image scoring above it is refused: "this looks like
  a brain image, but unlike the MRIs the model was trained on".

The router's embedding serves the wording of a refusal: ``KindDescriber`` keeps one centroid per
kind of other modality seen in training, and names the kind an unsupported image most resembles
(only when the image is as close to it as typical members of that kind are). The kind never
decides anything; the router and the specialists' checks do.

Both are stored beside the weights in ``ood.safetensors``; the card records the method, threshold
and the file's SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

OOD_FILE = "ood.safetensors"

#: How a refusal names what the image resembles. Keys are the kinds of ``other_modalities`` and
#: of the synthetic negatives (negatives.py); a kind without a phrase is never named.
KIND_PHRASES = {
    "abdominal_body_ct": "a CT slice of the body",
    "chest_ct": "a CT slice of the chest",
    "head_ct": "a head CT slice",
    "dental_xray": "a dental X-ray",
    "mammography": "a mammogram",
    "xray_angiography": "an X-ray angiogram",
    "xray_msk": "an X-ray of a limb, shoulder or pelvis",
    "mri_cardiac": "a cardiac MRI",
    "mri_msk_spine": "an MRI of the spine or a joint",
    "mri_body_other": "an MRI of the body, not of the brain",
    "ultrasound_fetal": "an ultrasound image",
    "ultrasound_other": "an ultrasound image",
    "endoscopy": "an endoscopy image",
    "fundus_photo": "a photograph of the retina",
    "oct_angiography": "an OCT angiogram of the retina",
    "histopathology": "a histology slide",
    "microscopy": "a microscope image",
    "photo": "a photograph",
    "document": "a document or screenshot",
    "screenshot": "a document or screenshot",
}


def embed(features: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) Grad-CAM-layer activations → (N, K) penultimate embedding (the model's own
    global average pooling, before the linear head)."""
    return features.float().mean(dim=(2, 3))


@dataclass
class MahalanobisCheck:
    """Distance of an embedding to the nearest class mean, in the whitened training feature space."""

    means: torch.Tensor  # (C, K)
    whitening: torch.Tensor  # (K, K): cov^-1/2 of the tied, shrunk covariance
    threshold: float
    _whitened_means: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._whitened_means = self.means @ self.whitening  # once, not on every read

    @classmethod
    def fit(cls, embeddings: torch.Tensor, labels: np.ndarray, shrinkage: float = 0.05) -> MahalanobisCheck:
        """Class means and a tied covariance, shrunk towards its mean variance (a well-conditioned
        inverse with ~5,000 samples in 1,280 dimensions); the threshold is set later (``calibrate``)."""
        x = embeddings.double()
        ys = torch.from_numpy(np.asarray(labels)).long()
        classes = sorted(set(ys.tolist()))
        means = torch.stack([x[ys == c].mean(0) for c in classes])
        centred = x - means[torch.searchsorted(torch.tensor(classes), ys)]
        cov = centred.T @ centred / max(1, len(x) - len(classes))
        target = torch.eye(cov.shape[0], dtype=cov.dtype) * cov.diagonal().mean()
        cov = (1 - shrinkage) * cov + shrinkage * target
        values, vectors = torch.linalg.eigh(cov)
        whitening = vectors @ torch.diag(values.clamp_min(1e-12).rsqrt()) @ vectors.T
        return cls(means=means.float(), whitening=whitening.float(), threshold=float("inf"))

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) squared distance to the nearest class mean, per dimension (≈ 1 for training data)."""
        z = embeddings.float() @ self.whitening  # whitening is symmetric
        mz = self._whitened_means
        d2 = (z.pow(2).sum(1, keepdim=True) - 2 * z @ mz.T + mz.pow(2).sum(1)[None]).clamp_min(0)
        return d2.min(1).values / z.shape[1]

    def calibrate(self, validation_embeddings: torch.Tensor, false_refusal: float) -> float:
        """Set the threshold that refuses ``false_refusal`` of the (in-distribution) validation images."""
        values = np.sort(self.scores(validation_embeddings).numpy())
        self.threshold = float(np.quantile(values, 1.0 - false_refusal, method="higher"))
        return self.threshold

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"ood.means": self.means.contiguous(), "ood.whitening": self.whitening.contiguous()}


@dataclass
class KindDescriber:
    """Names the kind of image an embedding most resembles (cosine to per-kind centroids)."""

    kinds: list[str]
    centroids: torch.Tensor  # (n_kinds, K), unit length
    min_similarity: torch.Tensor  # (n_kinds,): a typical member's similarity (5th percentile)

    @classmethod
    def fit(cls, embeddings: dict[str, torch.Tensor]) -> KindDescriber:
        kinds = sorted(k for k in embeddings if k in KIND_PHRASES and len(embeddings[k]))
        centroids, floors = [], []
        for kind in kinds:
            unit = torch.nn.functional.normalize(embeddings[kind].float(), dim=1)
            centroid = torch.nn.functional.normalize(unit.mean(0), dim=0)
            centroids.append(centroid)
            floors.append(torch.quantile(unit @ centroid, 0.05))
        return cls(kinds=kinds, centroids=torch.stack(centroids), min_similarity=torch.stack(floors))

    def describe(self, embedding: torch.Tensor) -> str | None:
        """The kind (a ``KIND_PHRASES`` key) the embedding resembles, or None when none fits well."""
        unit = torch.nn.functional.normalize(embedding.float().reshape(1, -1), dim=1)[0]
        similarity = self.centroids @ unit
        best = int(torch.argmax(similarity))
        return self.kinds[best] if float(similarity[best]) >= float(self.min_similarity[best]) else None

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "kinds.centroids": self.centroids.contiguous(),
            "kinds.min_similarity": self.min_similarity.contiguous(),
        }


def save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(path))


def load_check(path: Path, threshold: float) -> MahalanobisCheck:
    from safetensors.torch import load_file

    t = load_file(str(path))
    return MahalanobisCheck(means=t["ood.means"], whitening=t["ood.whitening"], threshold=threshold)


def load_describer(path: Path, kinds: list[str]) -> KindDescriber:
    from safetensors.torch import load_file

    t = load_file(str(path))
    return KindDescriber(kinds=list(kinds), centroids=t["kinds.centroids"], min_similarity=t["kinds.min_similarity"])
