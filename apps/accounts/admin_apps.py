"""``django.contrib.admin`` with our admin site (``admin_site.ImageMedixAdminSite``) as
``admin.site``; listed in INSTALLED_APPS instead of ``django.contrib.admin``."""

from django.contrib.admin.apps import AdminConfig


class ImageMedixAdminConfig(AdminConfig):
    default_site = "apps.accounts.admin_site.ImageMedixAdminSite"
