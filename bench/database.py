"""A throwaway database for benchmarks, on the configured or embedded PostgreSQL."""

from __future__ import annotations

import contextlib
import os

BENCH_DATABASE = "perch_agile_bench"


@contextlib.contextmanager
def bench_database():
    """Set up Django on an empty, migrated ``perch_agile_bench`` database; drop it afterwards."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["TEST"] = {"NAME": BENCH_DATABASE}
    django.setup()
    from django.db import connection

    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
