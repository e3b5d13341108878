"""Uploaded files stay in memory and are never written in plaintext to a temporary file.

Django's default handlers spool an upload above ``FILE_UPLOAD_MAX_MEMORY_SIZE`` to a named file
in the system temporary directory, where it sits unencrypted for the length of the request (and
longer if the process dies). Here every uploaded file is kept in memory, and at most
``UPLOAD_MAX_BYTES`` + 1 bytes of it: a bigger file keeps its true size and only that prefix, so
that validation refuses it for its size ("The file is larger than the 50 MB limit") without this
process ever holding more than the cap.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class CappedMemoryUploadHandler(FileUploadHandler):
    """The only upload handler (``FILE_UPLOAD_HANDLERS``): memory, up to the upload size cap."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.file = BytesIO()
        self.room = settings.UPLOAD_MAX_BYTES + 1

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self.room > 0:
            kept = raw_data[: self.room]
            self.file.write(kept)
            self.room -= len(kept)

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.file.seek(0)
        return InMemoryUploadedFile(
            file=self.file,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
