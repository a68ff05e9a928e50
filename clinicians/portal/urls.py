from django.urls import path

from clinicians.portal import review, views

app_name = "portal"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.SecondFactorView.as_view(), name="verify"),
    path("logout/", views.logout_view, name="logout"),
    path("patients/<int:patient_id>/", review.patient_chart, name="patient"),
    path("recommendations/<int:recommendation_id>/decision/", review.decide, name="decide"),
    path("alerts/<int:alert_id>/acknowledge/", review.acknowledge_alert, name="acknowledge-alert"),
    path("", views.home, name="home"),
]
