"""A throwaway database for benchmarks, on the configured or embedded PostgreSQL."""

from __future__ import annotations

import contextlib
import os

BENCH_DATABASE = "perch_agile_bench"


@contextlib.contextmanager
def bench_database(keep: bool = False, reuse: bool = False):
    """Set up Django on an empty, migrated ``perch_agile_bench`` database; drop it
    afterwards unless ``keep``. With ``reuse``, open the one a kept run left instead."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["TEST"] = {"NAME": BENCH_DATABASE}
    django.setup()
    from django.db import connection

    original_name = connection.settings_dict["NAME"]
    if reuse:
        connection.close()
        settings.DATABASES["default"]["NAME"] = connection.settings_dict["NAME"] = BENCH_DATABASE
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # kept by an older checkout: its tables brought up to date
    else:
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        if not keep:
            connection.creation.destroy_test_db(original_name, verbosity=0)


def synthetic_deployment(embeddings, recordings: int, labels: list[str]):
    """A project with one deployment whose windows hold ``embeddings`` [N, D], spread over
    ``recordings`` recordings, under a model named "bench-synthetic".

    Returns (user, project, deployment, model).
    """
    import numpy as np
    from django.contrib.auth import get_user_model

    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import register_embedding_model, replace_windows
    from annotations.models import Recording

    user = get_user_model().objects.create_user("bench")
    project = create_project(user, "bench", labels=labels)
    deployment = create_deployment(project, "bench")
    model = register_embedding_model("bench-synthetic", "1", embeddings.shape[1], 5.0, 5.0, 32_000)
    per_recording = -(-len(embeddings) // recordings)
    for first in range(0, len(embeddings), per_recording):
        chunk = embeddings[first : first + per_recording]
        recording = Recording.objects.create(deployment=deployment, path=f"/bench/{first}.wav", filename=f"{first}.wav")
        starts = np.arange(len(chunk), dtype=np.float64) * 5
        replace_windows(recording.pk, model, starts, starts + 5, chunk)
    return user, project, deployment, model
