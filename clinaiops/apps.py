from django.apps import AppConfig


class ClinaiopsConfig(AppConfig):
    name = "clinaiops"
    verbose_name = "ClinAIOps"

    def ready(self) -> None:
        from django.contrib import admin
        from django_otp.admin import OTPAdminSite

        # The admin site, like the portal, requires a verified second factor.
        admin.site.__class__ = OTPAdminSite
