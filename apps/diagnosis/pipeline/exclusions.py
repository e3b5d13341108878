"""Images of the public datasets that are not what their folder says.

The brain MRI set (several Kaggle sets merged) holds head CT slices filed as MRI; a specialist must
not learn them as MRI, and the router must learn them as what they are: images it refuses. The list
(``apps/diagnosis/data/dataset_exclusions.csv``, how it was made: the README beside it) is read by
the trainer (``exclusions`` option) and by ``manage.py seed_demo``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from .ood import KIND_PHRASES

#: The list the trainer reads unless told otherwise (``--set exclusions=FILE``, or ``=`` for none).
DEFAULT_EXCLUSIONS = Path(__file__).resolve().parents[1] / "data" / "dataset_exclusions.csv"
#: The dataset folder each specialist reads (the router reads both).
SPECIALIST_DATASET = {"chest": "chest_xray", "brain": "brain_mri"}
COLUMNS = ("dataset", "split", "file", "kind", "reason")


class Exclusions:
    """Images of a dataset that are not what their folder says, from a CSV with the columns
    ``dataset,split,file,kind,reason`` (``apps/diagnosis/data/dataset_exclusions.csv``).

    A specialist never trains or tests on them; the router counts each as a negative of its
    ``kind`` (an ``other_modalities`` kind, e.g. ``head_ct``) instead of a positive. Matched by
    file name within the dataset (``brain_mri``, ``chest_xray``), whatever folder it sits in.
    """

    def __init__(self, rows: list[dict[str, str]], source: str = "", sha256: str = "") -> None:
        self.rows = rows
        self.source, self.sha256 = source, sha256
        self._kind = {(r["dataset"], r["file"]): r["kind"] for r in rows}

    @classmethod
    def load(cls, path: str | Path | None) -> Exclusions:
        """The list in ``path``; none (an empty list) for ``None`` or ``""``. Bad rows raise ValueError."""
        if not path:
            return cls([])
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"exclusions: {path} does not exist")
        text = path.read_text()
        reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"exclusions: {path} must have the columns {','.join(COLUMNS)}")
        rows = []
        for number, row in enumerate(reader, start=2):
            if row["dataset"] not in SPECIALIST_DATASET.values():
                raise ValueError(f"exclusions: {path}, row {number}: unknown dataset {row['dataset']!r}")
            if row["kind"] not in KIND_PHRASES:
                raise ValueError(f"exclusions: {path}, row {number}: unknown kind {row['kind']!r}")
            if not row["file"] or not row["reason"]:
                raise ValueError(f"exclusions: {path}, row {number}: a file and a reason are required")
            rows.append(dict(row))
        return cls(rows, source=str(path), sha256=hashlib.sha256(text.encode()).hexdigest())

    def kind(self, dataset: str, name: str) -> str | None:
        """The kind of image ``name`` of ``dataset`` really is, or None when it is not listed."""
        return self._kind.get((dataset, name))

    def names(self, dataset: str) -> set[str]:
        return {file for (ds, file) in self._kind if ds == dataset}

    def summary(self) -> dict[str, Any]:
        """What the model card records."""
        return {"file": Path(self.source).name, "sha256": self.sha256, "images": len(self.rows)}
