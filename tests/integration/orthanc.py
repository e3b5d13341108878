"""A real Orthanc PACS for the tests: Debian's ``orthanc`` with its ``orthanc-dicomweb`` plugin,
started on a free loopback port with a generated configuration whose DICOMweb "server" entry is
the portal under test (with an integration credential).

``.ci/run`` installs both packages. Where they are missing the tests that need Orthanc skip and
say so; where ``CI`` is set they fail instead (``tests/availability.py``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.availability import unavailable

ORTHANC = "/usr/sbin/Orthanc"
#: Where Debian's orthanc-dicomweb puts the plugin.
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
SERVER_NAME = "imagemedix"


def require_orthanc() -> None:
    if not (shutil.which(ORTHANC) and Path(DICOMWEB_PLUGIN).exists()):
        unavailable(
            "Orthanc is not installed: apt-get install orthanc orthanc-dicomweb (.ci/run does) "
            f"to run the PACS tests ({ORTHANC}, {DICOMWEB_PLUGIN})"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Orthanc:
    url: str
    log_path: Path

    def call(self, method: str, path: str, body: bytes | dict[str, Any] | None = None, timeout: float = 120) -> Any:
        payload = {"json": body} if isinstance(body, dict) else {"data": body}
        response = requests.request(method, self.url + path, timeout=timeout, **payload)
        if response.status_code >= 400:
            raise AssertionError(
                f"Orthanc {method} {path}: {response.status_code} {response.text[:2000]}\n{self.log()}"
            )
        return response.json() if response.content else None

    def store(self, dicom: bytes) -> dict[str, Any]:
        """Store a DICOM file in Orthanc (REST upload); returns Orthanc's answer (ID, ParentStudy…)."""
        return self.call("POST", "/instances", dicom)

    def stow(self, orthanc_ids: list[str]) -> Any:
        """Have Orthanc send resources to the portal over STOW-RS (its DICOMweb client), and wait."""
        return self.call(
            "POST", f"/dicom-web/servers/{SERVER_NAME}/stow", {"Resources": orthanc_ids, "Synchronous": True}
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no Orthanc log)"


@contextmanager
def running_orthanc(tmp_path: Path, *, server_url: str, username: str, password: str) -> Iterator[Orthanc]:
    """Start Orthanc with the portal as its DICOMweb server ``imagemedix``; stop it afterwards."""
    require_orthanc()
    port = _free_port()
    root = tmp_path / "orthanc"
    (root / "db").mkdir(parents=True)
    config = {
        "Name": "ImageMedixTestPACS",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": port,
        "DicomPort": _free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpTimeout": 120,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            # The portal, as a hospital's PACS administrator would enter it (see README, "Connecting a PACS").
            "Servers": {
                SERVER_NAME: {
                    "Url": server_url,
                    "Username": username,
                    "Password": password,
                    # The test's live server is plain WSGI, which drops chunked request bodies.
                    "ChunkedTransfers": False,
                }
            },
        },
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = root / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([ORTHANC, str(config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=root)
    orthanc = Orthanc(url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"Orthanc exited with {proc.returncode}:\n{orthanc.log()}")
            try:
                orthanc.call("GET", "/system", timeout=2)
                break
            except (requests.ConnectionError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"Orthanc did not answer within 60 s:\n{orthanc.log()}") from None
                time.sleep(0.3)
        yield orthanc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
