from django.urls import path

from clinicians.care import views

app_name = "care"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.SecondFactorView.as_view(), name="verify"),
    path("logout/", views.logout_view, name="logout"),
    path("welcome/<str:token>/", views.WelcomeView.as_view(), name="welcome"),
    path("", views.home, name="home"),
]
