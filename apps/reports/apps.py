from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    label = "reports"

    def ready(self) -> None:
        from apps.studies.services import study_entered_in_error

        from .services import withdraw_from_patient

        study_entered_in_error.connect(withdraw_from_patient, dispatch_uid="reports.withdraw_from_patient")
