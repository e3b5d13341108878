"""Hashed, expiring API tokens (django-rest-knox) replace DRF's plain-text tokens.

DRF's ``authtoken_token`` table kept every token in plain text. It is dropped, so every token
made before this migration stops working: create new ones on the API tokens page or with
``manage.py create_api_token`` (README, "API").
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.migrations.recorder import MigrationRecorder


def drop_plaintext_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")
    # The app is gone from INSTALLED_APPS; forget its migrations, so adding it back would start clean.
    MigrationRecorder(connection).migration_qs.filter(app="authtoken").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('digest', models.CharField(max_length=128, primary_key=True, serialize=False)),
                ('token_key', models.CharField(db_index=True, max_length=25)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('expiry', models.DateTimeField(blank=True, null=True)),
                ('name', models.CharField(blank=True, help_text='What the token is for.', max_length=100)),
                ('hospital', models.ForeignKey(blank=True, help_text='The only hospital whose API this token opens; empty: every hospital of the user.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to='accounts.hospital')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='auth_token_set', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ['-created'],
            },
        ),
        migrations.RunPython(drop_plaintext_tokens, migrations.RunPython.noop),
    ]
