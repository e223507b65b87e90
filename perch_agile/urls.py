from django.contrib import admin
from django.urls import include, path, register_converter

from perch_agile.converters import IdConverter

register_converter(IdConverter, "id")

urlpatterns = [
    path("admin/", admin.site.urls),
    # log-in, log-out, password change and reset: Django's views, limited by
    # perch_agile.login_limits like every way in
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include(("annotations.api.urls", "api"))),
    path("", include("frontend.urls")),
]

handler404 = "perch_agile.errors.not_found"
