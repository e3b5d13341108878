"""The signed report's PDF: content (read back with pypdf), the data-only URL fetcher, storage
encrypted at rest, and the Celery task (eager path, idempotent)."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from django.core.files.storage import default_storage
from django_scopes import scopes_disabled
from pypdf import PdfReader

from apps.accounts.models import AuditEvent
from apps.reports import services
from apps.reports.models import PdfStatus, Report
from apps.reports.pdf import DISCLAIMER, DataOnlyURLFetcher, html_to_pdf, png_data_uri, render_report_pdf_bytes
from apps.reports.tasks import render_report_pdf
from apps.studies.storage import read_encrypted

from ..factories import png_bytes
from .helpers import write_report

pytestmark = pytest.mark.django_db


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def pdf_image_count(data: bytes) -> int:
    """Distinct embedded images (pages may share one XObject)."""
    reader = PdfReader(io.BytesIO(data))
    return len({image.data for page in reader.pages for image in page.images})


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_pdf_contains_the_report(world, paul_study):
    report = write_report(
        paul_study,
        world.alice,
        findings="Patchy opacity in the right lower zone.",
        impression="Consistent with bacterial pneumonia.",
        final_label="bacterial_pneumonia",
        sign=True,
    )
    with scopes_disabled():
        rendered = services.render_report_pdf_now(report.pk)
        assert rendered.pdf_status == PdfStatus.READY
        data = read_encrypted(rendered.pdf_name, rendered.pdf_sha256)
    assert data.startswith(b"%PDF")
    text = _squash(pdf_text(data))
    for expected in (
        "St Mary's Hospital",
        "Paul Potter",
        "A-0001",
        "17 May 1980",  # birth date
        "Female",  # sex (PatientFactory default)
        "Patchy opacity in the right lower zone.",
        "Consistent with bacterial pneumonia.",
        "Bacterial pneumonia",  # final label, as people read it
        "Dr Alice Adams",  # signer
        DISCLAIMER,
    ):
        assert expected in text, f"{expected!r} missing from the PDF text"
    assert "Electronically signed by Dr Alice Adams" in text
    assert pdf_image_count(data) >= 1, "the study thumbnail is embedded"


def test_user_text_is_escaped_and_pulls_nothing_in(world, paul_study, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(seed=7))
    hostile = (
        f'<img src="file://{secret}"> <img src="file:///etc/passwd"> '
        '<img src="http://127.0.0.1:9/track.png"> <link rel="stylesheet" href="https://example.com/x.css">'
    )
    report = write_report(paul_study, world.alice, findings=hostile, impression="<b>bold?</b>", sign=True)
    with scopes_disabled():
        report = Report.objects.select_related("hospital", "patient", "study", "signed_by").get(pk=report.pk)
        fetcher = DataOnlyURLFetcher()
        data = render_report_pdf_bytes(report, fetcher)
    text = _squash(pdf_text(data))
    # The markup is shown as the text the doctor typed, not interpreted…
    # (compared without whitespace: where the PDF wraps a long line depends on the tmp path's length)
    compact = "".join(text.split())
    assert 'src="file:///etc/passwd"' in compact and "<b>bold?</b>" in compact
    # …so the renderer never even asked for those URLs, and only the study thumbnail is embedded.
    assert fetcher.refused == []
    assert pdf_image_count(data) == 1
    assert "root:" not in text


class _Listener:
    """A local TCP socket that records whether anybody connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def test_fetcher_refuses_file_and_network_urls_even_in_raw_html(tmp_path):
    """Belt and braces: even if markup reached the renderer unescaped, only data: URIs load."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(seed=3))
    listener = _Listener()
    try:
        html = f"""<html><head>
          <link rel="stylesheet" href="http://127.0.0.1:{listener.port}/style.css">
          <style>body {{ background: url("file://{secret}"); }}</style></head><body>
          <p>Embedded: <img src="{png_data_uri(png_bytes(seed=1))}"></p>
          <p>Local file: <img src="file://{secret}"> <img src="file:///etc/passwd"></p>
          <p>Network: <img src="http://127.0.0.1:{listener.port}/pixel.png">
             <img src="https://127.0.0.1:{listener.port}/pixel.png"></p>
          <p>Relative: <img src="/etc/passwd"></p>
        </body></html>"""
        fetcher = DataOnlyURLFetcher()
        data = html_to_pdf(html, fetcher)
    finally:
        listener.close()
    assert data.startswith(b"%PDF")
    assert listener.connections == 0, "the renderer must not open network connections"
    refused = " ".join(fetcher.refused)
    assert f"file://{secret}" in refused and "file:///etc/passwd" in refused
    assert f"http://127.0.0.1:{listener.port}/pixel.png" in refused
    assert f"https://127.0.0.1:{listener.port}/pixel.png" in refused
    assert pdf_image_count(data) == 1, "only the data: image is embedded"


def test_direct_fetch_of_a_file_url_raises():
    fetcher = DataOnlyURLFetcher()
    with pytest.raises(ValueError):
        fetcher.fetch("file:///etc/passwd")
    with pytest.raises(ValueError):
        fetcher.fetch("http://example.com/")
    response = fetcher.fetch(png_data_uri(png_bytes()))
    assert response.read().startswith(b"\x89PNG")


def test_pdf_is_stored_encrypted(world, paul_signed):
    with scopes_disabled():
        report = services.render_report_pdf_now(paul_signed.pk)
    with default_storage.open(report.pdf_name, "rb") as fh:
        raw = fh.read()
    assert not raw.startswith(b"%PDF") and b"%PDF" not in raw
    assert b"Potter" not in raw and b"A-0001" not in raw
    assert report.pdf_name.startswith(f"reports/h{world.a.pk}/") and report.pdf_name.endswith(".pdf.enc")
    assert read_encrypted(report.pdf_name, report.pdf_sha256).startswith(b"%PDF")
    assert report.pdf_key_id and report.pdf_size > 1000


def test_task_renders_once_and_is_idempotent(world, paul_signed, media_files):
    before = set(media_files())
    ids = {"hospital_id": world.a.pk, "report_id": paul_signed.pk}
    result = render_report_pdf.apply(kwargs=ids)  # the eager path, as in the embedded mode
    assert result.get() == PdfStatus.READY
    with scopes_disabled():
        first = Report.objects.get(pk=paul_signed.pk)
    again = render_report_pdf.apply(kwargs=ids)
    assert again.get() == PdfStatus.READY
    with scopes_disabled():
        second = Report.objects.get(pk=paul_signed.pk)
        assert AuditEvent.objects.filter(action="report.pdf_render", object_id=str(first.pk)).count() == 1
    assert first.pdf_name == second.pdf_name and first.pdf_sha256 == second.pdf_sha256
    assert len(set(media_files()) - before) == 1, "exactly one PDF file was written"


def _render(hospital, report_id):
    return render_report_pdf.apply(kwargs={"hospital_id": hospital.pk, "report_id": report_id}).get()


def test_task_ignores_drafts_and_missing_reports(world, paul_draft):
    assert _render(world.a, paul_draft.pk) == "nothing-to-render"
    assert _render(world.a, 999_999) == "nothing-to-render"
    with scopes_disabled():
        assert Report.objects.get(pk=paul_draft.pk).pdf_name == ""


def test_task_sent_for_another_hospital_finds_nothing(world, paul_signed):
    """The task runs in the scope of the hospital it was sent: another hospital's report is not found."""
    assert _render(world.b, paul_signed.pk) == "nothing-to-render"
    with scopes_disabled():
        assert Report.objects.get(pk=paul_signed.pk).pdf_name == ""


def test_a_tenant_task_takes_keyword_ids_with_the_hospital():
    with pytest.raises(TypeError, match="hospital_id"):
        render_report_pdf.delay(123)
    with pytest.raises(TypeError, match="hospital_id"):
        render_report_pdf.delay(report_id=123)


@pytest.fixture
def eager_celery():
    """Run tasks inline, as the embedded default does (CI with REDIS_URL sends them to Redis)."""
    from imagemedix.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_signing_renders_the_pdf_on_commit(world, paul_draft, django_capture_on_commit_callbacks, eager_celery):
    with scopes_disabled(), django_capture_on_commit_callbacks(execute=True):
        services.sign_report(paul_draft, world.alice)
    with scopes_disabled():
        report = Report.objects.get(pk=paul_draft.pk)
    assert report.pdf_status == PdfStatus.READY
    assert "Paul Potter" in pdf_text(read_encrypted(report.pdf_name, report.pdf_sha256))


def test_a_rendering_failure_marks_the_pdf_failed(world, paul_signed, monkeypatch):
    import apps.reports.pdf as pdf_module

    def broken(report, fetcher=None):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(pdf_module, "render_report_pdf_bytes", broken)
    with scopes_disabled():
        with pytest.raises(RuntimeError):
            services.render_report_pdf_now(paul_signed.pk)
        assert Report.objects.get(pk=paul_signed.pk).pdf_status == PdfStatus.FAILED
