"""Log-in (throttled) and the account page with the user's API token."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from frontend import login_throttle


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        address = request.META.get("REMOTE_ADDR", "")
        username = request.POST.get("username", "")[:150]
        if login_throttle.is_locked(address, username):
            form = self.get_form()
            form.add_error(None, ValidationError("Too many failed log-ins: wait 15 minutes and try again."))
            return self.render_to_response(self.get_context_data(form=form), status=429)
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            login_throttle.clear(address, username)
        else:
            login_throttle.record_failure(address, username)
        return response


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
