from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "apps.integration"
    label = "integration"
    verbose_name = "Hospital integration (PACS and FHIR)"
