from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "apps.integration"
    label = "integration"
    verbose_name = "Hospital integration (PACS and FHIR)"

    def ready(self) -> None:
        from apps.reports.services import report_signed

        from . import receivers

        report_signed.connect(receivers.on_report_signed, dispatch_uid="integration.report_signed")
