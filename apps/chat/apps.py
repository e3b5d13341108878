from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "apps.chat"
    label = "chat"
    verbose_name = "Chat and notifications"

    def ready(self) -> None:
        from apps.accounts.signals import access_changed
        from apps.reports.services import report_pdf_changed
        from apps.studies.services import care_assignment_ended, study_status_changed

        from . import receivers

        study_status_changed.connect(receivers.on_study_status_changed, dispatch_uid="chat.study_status_changed")
        care_assignment_ended.connect(receivers.on_care_assignment_ended, dispatch_uid="chat.care_assignment_ended")
        report_pdf_changed.connect(receivers.on_report_pdf_changed, dispatch_uid="chat.report_pdf_changed")
        access_changed.connect(receivers.on_access_changed, dispatch_uid="chat.access_changed")
