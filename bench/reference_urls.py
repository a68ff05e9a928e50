"""What a typical Django app does: one reading per POST through a plain DRF ``ModelSerializer``
and ``CreateAPIView``. Bench-only; never part of the product's URL space.

The payload is the model's own shape (``device`` is the device's primary key); ownership of the
device and the patient behind the user are checked the usual way, with one query each.
"""

from django.urls import path
from django.utils import timezone
from rest_framework import generics, serializers

from clinaiops.urls import urlpatterns as project_urlpatterns
from patients.models import Patient, Reading


class ReferenceReadingSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reading
        fields = [
            "id",
            "device",
            "client_id",
            "reading_type",
            "systolic_mmhg",
            "diastolic_mmhg",
            "value",
            "measured_at",
            "utc_offset_minutes",
        ]

    def validate_device(self, device):
        if device.patient_id != self.context["patient"].pk:
            raise serializers.ValidationError("is registered to another patient")
        return device


class ReferenceReadingCreateView(generics.CreateAPIView):
    serializer_class = ReferenceReadingSerializer

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["patient"] = Patient.objects.get(user=self.request.user)
        return context

    def perform_create(self, serializer):
        serializer.save(patient=serializer.context["patient"], received_at=timezone.now())


REFERENCE_PATH = "bench/reference/readings/"

urlpatterns = [
    path(REFERENCE_PATH, ReferenceReadingCreateView.as_view(), name="bench-reference-reading"),
    *project_urlpatterns,
]
