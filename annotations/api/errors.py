"""One error shape for the whole API: ``{"error": "...", "details": ...}``."""

from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotations.errors import AudioUnavailable, InputError
from annotations.queueing import QueueUnavailable


def exception_handler(exc, context):
    if isinstance(exc, InputError):
        return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, AudioUnavailable):
        return Response({"error": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, QueueUnavailable):
        return Response({"error": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        # Every write is one transaction, so a lost connection leaves nothing half-saved.
        return Response(
            {"error": "the database connection was lost; nothing was saved: please retry"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        response.data = {"error": str(data["detail"])}
    elif isinstance(data, dict):
        fields = "; ".join(
            f"{field}: {' '.join(map(str, errors if isinstance(errors, list) else [errors]))}"
            for field, errors in data.items()
        )
        response.data = {"error": fields, "details": data}
    else:
        response.data = {"error": "; ".join(map(str, data)), "details": data}
    return response
