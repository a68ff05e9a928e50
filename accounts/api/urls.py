from django.urls import path

from accounts.api.views import TokenObtainView, TokenRefreshWithThrottleView

urlpatterns = [
    path("token/", TokenObtainView.as_view(), name="token-obtain"),
    path("token/refresh/", TokenRefreshWithThrottleView.as_view(), name="token-refresh"),
]
