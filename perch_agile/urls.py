from django.contrib import admin
from django.urls import include, path, register_converter

from frontend.account_views import ThrottledLoginView
from perch_agile.converters import IdConverter

register_converter(IdConverter, "id")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    # logout, password change and reset (Django's views, the admin's templates)
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include(("annotations.api.urls", "api"))),
    path("", include("frontend.urls")),
]

handler404 = "perch_agile.errors.not_found"
