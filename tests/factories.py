"""factory_boy factories for the domain objects; every value synthetic."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.utils import timezone

from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, Role, User
from patients.models import (
    CareTeamAssignment,
    Device,
    LabResult,
    Patient,
    Reading,
    ReadingType,
)

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


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device
        django_get_or_create = ("patient", "device_id")

    patient = factory.SubFactory(PatientFactory)
    device_id = "watch-1"


class ReadingFactory(factory.django.DjangoModelFactory):
    """A home blood-pressure reading by default; ``reading_type="steps", value=N`` for steps."""

    class Meta:
        model = Reading

    patient = factory.SubFactory(PatientFactory)
    device = factory.LazyAttribute(lambda o: DeviceFactory(patient=o.patient))
    client_id = factory.Sequence(lambda n: f"reading-{n}")
    reading_type = ReadingType.BLOOD_PRESSURE
    systolic_mmhg = factory.LazyAttribute(
        lambda o: 124 if o.reading_type == ReadingType.BLOOD_PRESSURE else None
    )
    diastolic_mmhg = factory.LazyAttribute(
        lambda o: 76 if o.reading_type == ReadingType.BLOOD_PRESSURE else None
    )
    value = None
    measured_at = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)


class LabResultFactory(factory.django.DjangoModelFactory):
    """A potassium of 4.2 mmol/L by default; pass ``code``, ``value`` and ``unit`` together."""

    class Meta:
        model = LabResult

    patient = factory.SubFactory(PatientFactory)
    client_id = factory.Sequence(lambda n: f"lab-{n}")
    code = "2823-3"
    value = Decimal("4.2")
    unit = "mmol/L"
    original_value = factory.LazyAttribute(lambda o: o.value)
    original_unit = factory.LazyAttribute(lambda o: o.unit)
    observed_at = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)
