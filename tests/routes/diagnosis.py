"""Diagnosis routes: the Grad-CAM overlay and heatmap downloads and the study status JSON.

Both are for the clinicians who see the study: the doctors caring for the patient (Alice for
Paul) and the hospital's admins (Carol). Patients read signed reports instead (403).
"""

from __future__ import annotations

import io
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


def _check_grey_png(response: Any, w: Any) -> None:
    from PIL import Image

    assert response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).mode == "L"  # the map alone, not blended


def _check_status(response: Any, w: Any) -> None:
    payload = json.loads(response.content)
    assert payload["status"] in {"uploaded", "queued", "processing", "done", "unsure", "refused", "failed"}
    assert payload["diagnosis"]["label"] == "bacterial_pneumonia"


ROUTES = [
    Route("diagnosis:overlay", kwargs=_study_with_read, owner=("alice", 200), check=_check_png),
    Route("diagnosis:overlay", kwargs=_study_with_read, owner=("carol", 200), label="hospital admin"),
    Route("diagnosis:heatmap", kwargs=_study_with_read, owner=("alice", 200), check=_check_grey_png),
    Route("diagnosis:heatmap", kwargs=_study_with_read, owner=("carol", 200), label="hospital admin"),
    Route("diagnosis:study_status", kwargs=_study_with_read, owner=("alice", 200), check=_check_status),
    Route("diagnosis:study_status", kwargs=_study_with_read, owner=("carol", 200), label="hospital admin"),
]


# --- The models dashboard (learning loop): hospital admins change, doctors read. -------------


def _candidate(w: Any) -> dict[str, Any]:
    from tests.diagnosis.helpers import fake_version

    return {"version_pk": fake_version("chest", "route-candidate").pk, "action": "shadow"}


def _shadowed(w: Any) -> dict[str, Any]:
    from apps.diagnosis import deployments
    from tests.diagnosis.helpers import fake_version

    mv = fake_version("chest", "route-shadowed")
    if deployments.deployment_of(w.a, mv) is None:
        deployments.start_shadow(w.a, mv, w.carol)
    return {"version_pk": mv.pk, "action": "rollback"}


def _check_rolled_back(response: Any, w: Any) -> None:
    from django_scopes import scopes_disabled

    from apps.diagnosis.models import ModelDeployment

    with scopes_disabled():
        assert not ModelDeployment.objects.filter(model_version__version="route-shadowed").exists()


ROUTES += [
    Route("diagnosis:models", owner=("carol", 200), unassigned_doctor=200, label="hospital admin"),
    Route("diagnosis:models", owner=("alice", 200), unassigned_doctor=200, label="doctor, read-only"),
    Route("diagnosis:deployment_action", kwargs=_candidate, owner=("carol", 200), unassigned_doctor=403),
    Route(
        "diagnosis:deployment_action",
        method="POST",
        kwargs=_shadowed,
        data=lambda w: {"confirm": "on"},
        owner=("carol", 302),
        unassigned_doctor=403,
        check=_check_rolled_back,
    ),
]


def _alert(w: Any) -> dict[str, Any]:
    from apps.diagnosis.models import DriftAlert

    alert = DriftAlert.objects.create(
        hospital=w.a, task="chest", signal="class_mix", value=0.4, threshold=0.25, message="Class mix moved."
    )
    return {"alert_pk": alert.pk}


ROUTES += [
    Route(
        "diagnosis:acknowledge_alert",
        method="POST",
        kwargs=_alert,
        data=lambda w: {"note": "seen"},
        owner=("carol", 302),
        unassigned_doctor=403,
    ),
]
