"""Perch Agile: agile modeling for bioacoustics on frozen Perch / BirdNET embeddings."""

from perch_agile.celery import app as celery_app

__all__ = ["celery_app"]
