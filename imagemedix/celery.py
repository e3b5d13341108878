"""Celery application. Tasks are discovered in every installed app's ``tasks.py``.

In the embedded default (no ``REDIS_URL``) tasks run inline (``task_always_eager``);
with ``REDIS_URL`` set they go to Redis and separate ``celery worker`` processes.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagemedix.settings")

app = Celery("imagemedix")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
