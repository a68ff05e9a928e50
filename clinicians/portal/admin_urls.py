"""URLs of the administrator's workspace, at /portal/admin/ (``clinicians.portal.clinic_setup``)."""

from django.urls import path

from clinicians.portal import clinic_setup

urlpatterns = [
    path("", clinic_setup.home, name="admin-home"),
    path("teams/", clinic_setup.team_create, name="admin-team-new"),
    path("teams/<int:team_id>/", clinic_setup.team_detail, name="admin-team"),
    path("staff/invite/", clinic_setup.staff_invite, name="admin-staff-invite"),
    path("staff/<int:user_id>/", clinic_setup.staff_detail, name="admin-staff"),
    path("patients/enrol/", clinic_setup.patient_enrol, name="admin-patient-new"),
    path("patients/import/", clinic_setup.patient_import, name="admin-patient-import"),
    path("patients/<int:patient_id>/", clinic_setup.patient_detail, name="admin-patient"),
]
