"""The account page with the user's API token."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token


@never_cache  # the page shows the API token: no browser or proxy keeps a copy
@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    """Shows the API token; POST creates or replaces it (the old one stops working)."""
    token = Token.objects.filter(user=request.user).first()
    if request.method == "POST":
        if token:
            token.delete()
        Token.objects.create(user=request.user)
        return redirect("frontend:account")
    return render(request, "frontend/account.html", {"token": token})
