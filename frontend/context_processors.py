"""Template context every page shares."""

from django.conf import settings

from annotations.model_catalogue import SPECS


def embedding_model(request) -> dict:
    """The configured embedding model and its licence, for the page footer."""
    spec = SPECS.get(settings.PERCH_AGILE_MODEL)
    return {"embedding_model_name": settings.PERCH_AGILE_MODEL, "embedding_model_licence": spec.licence if spec else ""}
