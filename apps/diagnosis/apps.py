import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate

log = logging.getLogger(__name__)


def register_shipped_models(sender: AppConfig, using: str = "default", **kwargs: object) -> None:
    """After ``migrate``: register the artifacts under MODEL_WEIGHTS_DIR (hashing and JSON only,
    no torch), so a fresh checkout diagnoses with its shipped weights right away."""
    from django.db import DEFAULT_DB_ALIAS, connections

    from .models import ModelVersion

    if using != DEFAULT_DB_ALIAS:
        return
    if ModelVersion._meta.db_table not in connections[using].introspection.table_names():
        return  # migrated backwards past our first migration
    from .registry import sync_shipped_models

    created = sync_shipped_models()
    if created and kwargs.get("verbosity", 1):
        log.info("Registered %d shipped model version(s).", len(created))


class DiagnosisConfig(AppConfig):
    name = "apps.diagnosis"
    label = "diagnosis"
    verbose_name = "AI second read"

    def ready(self) -> None:
        from apps.studies.services import read_requested

        from .watchdog import on_read_requested

        post_migrate.connect(register_shipped_models, sender=self, dispatch_uid="diagnosis.register_shipped_models")
        read_requested.connect(on_read_requested, dispatch_uid="diagnosis.read_requested")
