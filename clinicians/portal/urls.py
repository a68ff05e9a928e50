from django.urls import include, path

from clinicians.portal import (
    alerts,
    bounds,
    emergency,
    loop,
    model_cards,
    readings,
    report_views,
    review,
    views,
)

app_name = "portal"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.SecondFactorView.as_view(), name="verify"),
    path("logout/", views.logout_view, name="logout"),
    path("welcome/<str:token>/", views.WelcomeView.as_view(), name="welcome"),
    path(
        "patients/<int:patient_id>/bounds/<int:bounds_id>/confirm/",
        review.confirm_bounds,
        name="confirm-bounds",
    ),
    path("patients/<int:patient_id>/", review.patient_chart, name="patient"),
    path("patients/<int:patient_id>/bounds/", bounds.edit_bounds, name="edit-bounds"),
    path(
        "patients/<int:patient_id>/alert-thresholds/",
        bounds.edit_thresholds,
        name="edit-thresholds",
    ),
    path("patients/<int:patient_id>/launch/", review.launch_app, name="launch-app"),
    path(
        "patients/<int:patient_id>/readings/<int:reading_id>/entered-in-error/",
        readings.entered_in_error,
        name="reading-entered-in-error",
    ),
    path("recommendations/<int:recommendation_id>/decision/", review.decide, name="decide"),
    path("alerts/<int:alert_id>/acknowledge/", alerts.acknowledge_alert, name="acknowledge-alert"),
    path("patients/<int:patient_id>/snooze/", alerts.snooze_condition, name="snooze"),
    path("snoozes/<int:snooze_id>/end/", alerts.end_snooze, name="end-snooze"),
    path("worklist/counts/", alerts.worklist_counts, name="worklist-counts"),
    path("emergency-access/", emergency.start, name="emergency-access"),
    path("patients/<int:patient_id>/messages/", loop.reply, name="reply"),
    path("patients/<int:patient_id>/messages/read/", loop.mark_thread_read, name="thread-read"),
    path("patients/<int:patient_id>/goals/", loop.new_goal, name="new-goal"),
    path("patients/<int:patient_id>/visits/", loop.book_visit, name="book-visit"),
    path("goals/<int:goal_id>/status/", loop.goal_status, name="goal-status"),
    path("visits/<int:visit_id>/", loop.visit_action, name="visit-action"),
    path("visits/<int:visit_id>/report/", report_views.visit_report, name="visit-report"),
    path(
        "visits/<int:visit_id>/report.pdf", report_views.visit_report_pdf, name="visit-report-pdf"
    ),
    # The paths visits had before they were named visits: forms already open in a browser still
    # post to them. The same views; nothing links to them any more.
    path("patients/<int:patient_id>/appointments/", loop.book_visit),
    path("appointments/<int:visit_id>/", loop.visit_action),
    path("models/<str:version>/", model_cards.card, name="model-card"),
    # The non-clinical workspaces: clinic set-up (admins), audit (auditors), models (owners).
    path("admin/", include("clinicians.portal.admin_urls")),
    path("audit/", include("clinicians.portal.auditor_urls")),
    path("model-owner/", include("clinicians.portal.model_owner_urls")),
    path("", views.home, name="home"),
]
