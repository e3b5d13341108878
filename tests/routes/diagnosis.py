"""Diagnosis routes: the Grad-CAM overlay download and the study status JSON.

Both are for the clinicians who see the study: the doctors caring for the patient (Alice for
Paul) and the hospital's admins (Carol). Patients read signed reports instead (403).
"""

from __future__ import annotations

import json
from typing import Any

from tests.diagnosis.helpers import make_diagnosis
from tests.factories import make_study
from tests.routes import Route


def _study_with_read(w: Any) -> dict[str, Any]:
    study = make_study(w.paul_record, w.alice)
    make_diagnosis(study)
    return {"study_pk": study.pk}


def _check_png(response: Any, w: Any) -> None:
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def _check_status(response: Any, w: Any) -> None:
    payload = json.loads(response.content)
    assert payload["status"] in {"uploaded", "queued", "processing", "done", "unsure", "refused", "failed"}
    assert payload["diagnosis"]["label"] == "bacterial_pneumonia"


ROUTES = [
    Route("diagnosis:overlay", kwargs=_study_with_read, owner=("alice", 200), check=_check_png),
    Route("diagnosis:overlay", kwargs=_study_with_read, owner=("carol", 200), label="hospital admin"),
    Route("diagnosis:study_status", kwargs=_study_with_read, owner=("alice", 200), check=_check_status),
    Route("diagnosis:study_status", kwargs=_study_with_read, owner=("carol", 200), label="hospital admin"),
]
