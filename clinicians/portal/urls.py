from django.urls import path

from clinicians.portal import views

app_name = "portal"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.SecondFactorView.as_view(), name="verify"),
    path("logout/", views.logout_view, name="logout"),
    path("", views.home, name="home"),
]
