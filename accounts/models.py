"""Users, roles, care teams."""

from __future__ import annotations

from typing import ClassVar, Self

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class Role(models.TextChoices):
    PATIENT = "patient", "Patient"
    CLINICIAN = "clinician", "Clinician"
    ADMIN = "admin", "Administrator"
    AUDITOR = "auditor", "Auditor"


class User(AbstractUser):
    """A person who signs in. The role decides what they may reach; it never changes silently
    (a role change is an audited update by an admin)."""

    role = models.CharField(max_length=16, choices=Role.choices)

    objects: ClassVar[UserManager[Self]] = UserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="user_role_valid"
            ),
        ]


class CareTeam(models.Model):
    """A group of clinicians sharing responsibility for a panel of patients."""

    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CareTeamMembership(models.Model):
    class TeamRole(models.TextChoices):
        PHYSICIAN = "physician", "Physician"
        NURSE = "nurse", "Nurse"
        PHARMACIST = "pharmacist", "Pharmacist"
        LEAD = "lead", "Team lead"

    care_team = models.ForeignKey(CareTeam, on_delete=models.PROTECT, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="care_team_memberships")
    team_role = models.CharField(
        max_length=16, choices=TeamRole.choices, default=TeamRole.PHYSICIAN
    )
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["care_team", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.care_team_id}"


class ClinicianProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="clinician_profile")
    display_name = models.CharField(max_length=120)
    qualification = models.CharField(max_length=60, blank=True)
    npi = models.CharField("National Provider Identifier", max_length=10, blank=True)

    def __str__(self) -> str:
        return self.display_name
