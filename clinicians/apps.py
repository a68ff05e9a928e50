from django.apps import AppConfig


class CliniciansConfig(AppConfig):
    name = "clinicians"
    verbose_name = "Clinical oversight"

    def ready(self) -> None:
        from clinicians import receivers  # noqa: F401 - connects evaluation to new data
