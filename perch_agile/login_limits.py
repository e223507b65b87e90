"""One limit on password guessing for every way in: the log-in page, the admin's log-in,
``/api/token/`` and password-reset mails.

Three counters of failed attempts, kept in the shared cache (Redis) per window of
``LOGIN_FAILURE_WINDOW_S``:

- per **client address and user name**: after ``LOGIN_FAILURE_LIMIT`` failures that client
  may not try that name again until the window ends;
- per **client address**: after ``LOGIN_ADDRESS_FAILURE_LIMIT`` failures over any names,
  that client may not try at all (rotating names gains nothing);
- per **user name**, from every address: past ``LOGIN_FAILURE_LIMIT`` failures each further
  attempt waits a delay that doubles up to ``LOGIN_USER_DELAY_MAX_S``. A delay rather than
  a lock, so that nobody can lock another user out for longer than that delay, while
  guesses from many addresses at one account stay slow.

User names are counted as Django authenticates them (NFKC, stripped, case-folded), so
``"victor "`` or a fullwidth ``ｖｉｃｔｏｒ`` is the same name. The client address is
REMOTE_ADDR, or with ``PERCH_AGILE_TRUSTED_PROXIES`` = N the address the outermost of N
trusted proxies saw (never a header the client alone sets).

``LoginLimitMiddleware`` answers 429 before the view runs; ``LimitedModelBackend``
counts every password check, wherever ``authenticate`` is called, and refuses to check a
password while a limit holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import unicodedata

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import render

# View name -> the request field that names the account.
PASSWORD_VIEWS = {"login": "username", "admin:login": "username", "api:token": "username"}
RESET_VIEWS = {"password_reset": "email"}
# A guessing script's body is small; a larger one is not parsed for a name.
MAX_PARSED_BODY_BYTES = 16_384


@dataclasses.dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    reason: str


def normalised_name(raw: object) -> str:
    return unicodedata.normalize("NFKC", str(raw or "")).strip().casefold()[:254]


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.PERCH_AGILE_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    # Each trusted proxy appends the address it saw; entries left of those are the client's say.
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return forwarded[-proxies] if len(forwarded) >= proxies else remote


def _key(kind: str, *parts: str) -> str:
    """The counter of ``parts`` in the current window (fixed windows: a count's end is known)."""
    window = int(time.time() // settings.LOGIN_FAILURE_WINDOW_S)
    return f"login-limit:{kind}:{window}:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def _count(key: str) -> int:
    return cache.get(key, 0)


def _add(key: str, window_s: int) -> int:
    cache.add(key, 0, timeout=window_s)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_s)
        return 1


def _window_left_s() -> int:
    window = settings.LOGIN_FAILURE_WINDOW_S
    return math.ceil(window - time.time() % window)


def password_refusal(address: str, name: str) -> Refusal | None:
    """Why a password for ``name`` from ``address`` may not be checked now, if it may not."""
    address_key = _key("address", address)
    if _count(address_key) >= settings.LOGIN_ADDRESS_FAILURE_LIMIT:
        return Refusal(_window_left_s(), "Too many failed log-ins from this address")
    pair_key = _key("pair", address, name)
    if _count(pair_key) >= settings.LOGIN_FAILURE_LIMIT:
        return Refusal(_window_left_s(), "Too many failed log-ins for this user name")
    allowed_at = cache.get(_key("user-delay", name))
    if allowed_at and allowed_at > time.time():
        return Refusal(math.ceil(allowed_at - time.time()), "Too many failed log-ins for this user name")
    return None


def record_password_failure(address: str, name: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_S
    _add(_key("address", address), window)
    _add(_key("pair", address, name), window)
    failures = _add(_key("user", name), window)
    if failures >= settings.LOGIN_FAILURE_LIMIT:
        delay = min(2 ** (failures - settings.LOGIN_FAILURE_LIMIT), settings.LOGIN_USER_DELAY_MAX_S)
        cache.set(_key("user-delay", name), time.time() + delay, timeout=math.ceil(delay))


def record_password_success(address: str, name: str) -> None:
    """The right password ends that name's delay; the address keeps its count."""
    cache.delete_many([_key("pair", address, name), _key("user", name), _key("user-delay", name)])


def reset_refusal(address: str, email: str) -> Refusal | None:
    """Counts a password-reset request; refuses it past the per-address or per-mail limit."""
    window = settings.LOGIN_FAILURE_WINDOW_S
    for key, limit in (
        (_key("reset-address", address), settings.PASSWORD_RESET_ADDRESS_LIMIT),
        (_key("reset-email", email), settings.PASSWORD_RESET_EMAIL_LIMIT),
    ):
        if _count(key) >= limit:
            return Refusal(_window_left_s(), "Too many password-reset requests")
    _add(_key("reset-address", address), window)
    _add(_key("reset-email", email), window)
    return None


def _posted_field(request, field: str) -> str:
    if request.content_type == "application/json":
        if len(request.body) > MAX_PARSED_BODY_BYTES:
            return ""
        try:
            data = json.loads(request.body)
        except ValueError:
            return ""
        return data.get(field, "") if isinstance(data, dict) else ""
    return request.POST.get(field, "")


def _refused(request, refusal: Refusal, api: bool):
    message = f"{refusal.reason}: wait {refusal.retry_after_s} s and try again."
    if api:
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "registration/too_many_attempts.html", {"message": message}, status=429)
    response["Retry-After"] = str(refusal.retry_after_s)
    return response


class LoginLimitMiddleware:
    """Answers 429 to a log-in or reset request while one of its limits holds."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method != "POST" or request.resolver_match is None:
            return None
        view = request.resolver_match.view_name
        address = client_address(request)
        if view in PASSWORD_VIEWS:
            refusal = password_refusal(address, normalised_name(_posted_field(request, PASSWORD_VIEWS[view])))
        elif view in RESET_VIEWS:
            refusal = reset_refusal(address, normalised_name(_posted_field(request, RESET_VIEWS[view])))
        else:
            return None
        return _refused(request, refusal, api=view.startswith("api:")) if refusal else None


class LimitedModelBackend(ModelBackend):
    """Django's user-and-password check, counted and refused under the limits above."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:  # management commands and the shell: no client to limit
            return super().authenticate(request, username, password, **kwargs)
        name = normalised_name(username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD))
        address = client_address(request)
        if password_refusal(address, name):
            raise PermissionDenied  # stops authenticate() before any other backend checks it
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            record_password_failure(address, name)
        else:
            record_password_success(address, name)
        return user
