"""Caregiver routes (``patients.api.caregivers``): the patient's and the caregiver's."""

from django.urls import path

from patients.api.caregivers import (
    AccessLogView,
    CaregiverDetailView,
    CaregiverGrantsAliasListView,
    CaregiverGrantsAliasRevokeView,
    CaregiverListView,
    CaregiverRevokeView,
    FollowingView,
)

urlpatterns = [
    path("me/caregivers/", CaregiverListView.as_view(), name="me-caregivers"),
    path("me/caregivers/access-log/", AccessLogView.as_view(), name="me-caregivers-access-log"),
    path("me/caregivers/<int:pk>/", CaregiverDetailView.as_view(), name="me-caregiver"),
    path(
        "me/caregivers/<int:pk>/revoke/", CaregiverRevokeView.as_view(), name="me-caregiver-revoke"
    ),
    path("me/following/", FollowingView.as_view(), name="me-following"),
    path("caregiver-grants/", CaregiverGrantsAliasListView.as_view(), name="caregiver-grants"),
    path(
        "caregiver-grants/<int:pk>/revoke/",
        CaregiverGrantsAliasRevokeView.as_view(),
        name="caregiver-grant-revoke",
    ),
]
