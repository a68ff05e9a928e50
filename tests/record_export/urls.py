"""The project's URLs with the record export's routes mounted where ``clinaiops/urls.py`` is to
mount them (``path("", include("clinaiops.api.record_exports"))`` in ``api_v1``): first, so the
tests pass before and after that line is added."""

from django.urls import include, path

from clinaiops.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/v1/", include("clinaiops.api.record_exports")), *project_urlpatterns]
