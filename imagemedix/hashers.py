"""Password hashing that scales: Argon2id with the OWASP parameters, and a per-process cap on how
many hashes are computed at once.

Django's default Argon2 parameters (``memory_cost=102400`` KiB, ``parallelism=8``) cost about
100 MB and several cores per login; thirty simultaneous logins took one daphne process to 2.7 GB.
The OWASP Password Storage Cheat Sheet's Argon2id setting ``m=19456 KiB (19 MiB), t=2, p=1`` costs a
fifth of the memory and one core. Hashes made with other parameters still verify (the algorithm
name stays ``argon2``) and Django re-hashes them on the next successful login (``must_update``).

The cap (``PASSWORD_HASH_CONCURRENCY``, default 2) makes a burst of logins queue for a slot instead
of allocating memory for every request at once.
"""

from __future__ import annotations

import functools
import threading

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher


@functools.cache
def hash_slots() -> threading.BoundedSemaphore:
    """The process-wide semaphore every hash computation holds while it runs."""
    return threading.BoundedSemaphore(settings.PASSWORD_HASH_CONCURRENCY)


class BoundedArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2id with OWASP's parameters; at most ``PASSWORD_HASH_CONCURRENCY`` at a time per process."""

    time_cost = 2
    memory_cost = 19456  # KiB
    parallelism = 1

    def encode(self, password: str, salt: str) -> str:
        with hash_slots():
            return super().encode(password, salt)

    def verify(self, password: str, encoded: str) -> bool:
        with hash_slots():
            return super().verify(password, encoded)
