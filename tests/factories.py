"""factory_boy factories for the domain objects; every value synthetic."""

from __future__ import annotations

import factory

from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
from patients.models import CareTeamAssignment, Patient

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n:04d}")
    role = Role.PATIENT
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805 - factory_boy hook signature
        if create:
            obj.save()


class CareTeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CareTeam
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Care team {n}")


class ClinicianFactory(UserFactory):
    role = Role.CLINICIAN
    username = factory.Sequence(lambda n: f"clinician{n:03d}")

    @factory.post_generation
    def care_team(obj, create, extracted, **kwargs):  # noqa: N805
        if not create:
            return
        ClinicianProfile.objects.get_or_create(user=obj, defaults={"display_name": f"Dr {obj.pk}"})
        if extracted is not None:
            CareTeamMembership.objects.create(care_team=extracted, user=obj)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, role=Role.PATIENT)
    given_name = factory.Sequence(lambda n: f"Given{n}")
    family_name = factory.Sequence(lambda n: f"Family{n}")
    birth_year = 1960
    sex = "female"
    race = "white"
    ethnicity = "not_hispanic_or_latino"

    @factory.post_generation
    def care_team(obj, create, extracted, **kwargs):  # noqa: N805
        if create and extracted is not None:
            CareTeamAssignment.objects.create(patient=obj, care_team=extracted)
