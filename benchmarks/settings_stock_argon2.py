"""Production settings with Django's stock Argon2 hasher, for benchmarks/login_burst.py only.

It must be the only Argon2 hasher: Django picks the hasher for a stored hash by its algorithm name,
and ours is also called ``argon2``.
"""

from imagemedix.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
