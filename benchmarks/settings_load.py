"""Production settings for benchmarks/load_test.py only: the session and CSRF cookies lose their
``Secure`` flag, because the load generator talks plain HTTP to daphne on the loopback (there is no
TLS proxy in the benchmark). Nothing else differs from ``imagemedix.settings`` with DJANGO_DEBUG=0."""

from imagemedix.settings import *  # noqa: F403

SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
