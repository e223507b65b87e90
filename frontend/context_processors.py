"""Template context every page shares."""

from django.conf import settings

from annotations.model_catalogue import configured_spec, hop_choices


def embedding_model(request) -> dict:
    """The configured embedding model: its licence for the page footer, its window and the
    hops offered for it for the deployment forms."""
    spec = configured_spec()
    return {
        "embedding_model_name": settings.PERCH_AGILE_MODEL,
        "embedding_model_licence": spec.licence if spec else "",
        "window_s": spec.window_s if spec else None,
        "hop_choices": hop_choices(spec.window_s) if spec else [],
    }
