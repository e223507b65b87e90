"""Slowing down password guessing: after too many failed log-ins for one user name from
one address, further attempts are refused for a while without checking the password."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(address: str, username: str) -> str:
    digest = hashlib.sha256(f"{address}|{username.lower()}".encode()).hexdigest()
    return f"login-failures:{digest}"


def is_locked(address: str, username: str) -> bool:
    return cache.get(_key(address, username), 0) >= settings.LOGIN_FAILURE_LIMIT


def record_failure(address: str, username: str) -> None:
    key = _key(address, username)
    cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_S)
    cache.incr(key)


def clear(address: str, username: str) -> None:
    cache.delete(_key(address, username))
