from django.urls import path

from accounts.api.clients import ClientDetailView, ClientListView

urlpatterns = [
    path("", ClientListView.as_view(), name="oauth-client-list"),
    path("<str:client_id>/", ClientDetailView.as_view(), name="oauth-client-detail"),
]
