"""The auditors' workspace in the portal (issue 13): the journal searched by patient, actor,
action, object and dates; the chain's verification status; exports made and downloaded here
and verified offline; the report of emergency accesses and overrides. Only auditors; every
page that shows the trail is itself journalled, naming the patients it showed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import re
import uuid
import zipfile

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import keys
from audit.models import AuditEvent, AuditExport, Checkpoint
from audit.offline import verify_export
from audit.services import record_event, record_refusal, seal_checkpoints
from audit.triggers import install_sql, uninstall_sql
from clinicians import decisions
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

HOME = "/portal/audit/"
VERIFY = "/portal/audit/verification/"
EXPORTS = "/portal/audit/exports/"
REVIEW = "/portal/audit/review/"
PAGES = (HOME, VERIFY, EXPORTS, REVIEW, f"/portal/audit/exports/{uuid.uuid4()}/download/")
# A moment a week ago, mid-morning UTC: events then fall on a day of their own.
LAST_WEEK = dt.datetime.combine(
    dt.datetime.now(dt.UTC).date() - dt.timedelta(days=7), dt.time(9, 30), tzinfo=dt.UTC
)
DAY = LAST_WEEK.date().isoformat()  # last week's day
NEXT_DAY = (LAST_WEEK.date() + dt.timedelta(days=1)).isoformat()


@pytest.fixture(autouse=True)
def _isolated_signing_key(settings, tmp_path):
    """A data directory (signing key, export files) of the test's own."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.AUDIT_SIGNING_KEY = None
    keys.clear_cache()
    yield
    keys.clear_cache()


@pytest.fixture
def auditor_portal(auditor) -> Client:
    return portal_client(auditor)


def event(**fields) -> AuditEvent:
    with transaction.atomic():
        return record_event(**({"component": "tests"} | fields))


def shown(response) -> list[int]:
    """The sequences of the journal rows on a page, in page order."""
    return [int(s) for s in re.findall(r'id="event-(\d+)"', response.content.decode())]


def last_read(actor) -> AuditEvent:
    return AuditEvent.objects.filter(action="read", object_type="audit_event", actor=actor).last()


def everything() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("sequence"))


@pytest.fixture
def journal(clinician_a, patient_a, patient_b):
    """Events of several patients, actors, actions and objects, one of them a week ago."""
    with time_machine.travel(LAST_WEEK, tick=False):
        event(action="update", actor=clinician_a, object_type="regimen", patient_id=patient_a.pk)
    event(action="update", actor=clinician_a, object_type="regimen", patient_id=patient_b.pk)
    event(action="create", object_type="goal", object_id=7, patient_id=patient_a.pk)
    event(action="evaluate", object_type="patient", object_id=patient_b.pk, patient_id=patient_b.pk)
    event(action="login", actor=clinician_a, object_type="user", object_id=clinician_a.pk)
    event(action="read", actor=clinician_a, patient_ids=[patient_a.pk, patient_b.pk])


# --- the journal, searched ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("patient={a}", lambda e, w: w["a"] in e.patient_ids),
        ("actor={clinician}", lambda e, w: e.actor_id == w["clinician_id"]),
        ("actor={clinician_id}", lambda e, w: e.actor_id == w["clinician_id"]),
        ("action=update", lambda e, w: e.action == "update"),
        (
            "object_type=goal&object_id=7",
            lambda e, w: (e.object_type, e.object_id) == ("goal", "7"),
        ),
        (
            "patient={b}&action=update",
            lambda e, w: w["b"] in e.patient_ids and e.action == "update",
        ),
        ("until={day}", lambda e, w: e.occurred_at.date() <= LAST_WEEK.date()),
        ("since={next_day}", lambda e, w: e.occurred_at.date() > LAST_WEEK.date()),
        ("since={day}&until={day}", lambda e, w: e.occurred_at.date() == LAST_WEEK.date()),
    ],
)
def test_filters_narrow_the_journal_to_the_matching_events_newest_first(
    auditor_portal, journal, clinician_a, patient_a, patient_b, query, matches
):
    world = {
        "a": patient_a.pk,
        "b": patient_b.pk,
        "clinician": clinician_a.username,
        "clinician_id": clinician_a.pk,
        "day": DAY,
        "next_day": NEXT_DAY,
    }
    journal_now = everything()
    expected = [e.sequence for e in reversed(journal_now) if matches(e, world)]
    response = auditor_portal.get(f"{HOME}?{query.format(**world)}")
    assert response.status_code == 200
    assert expected and shown(response) == expected
    assert len(expected) < len(journal_now)  # the filter left something out


def test_a_row_shows_who_did_what_to_which_object_for_whom_and_the_changes(
    auditor_portal, clinician_a, patient_a
):
    row = event(
        action="update",
        actor=clinician_a,
        object_type="regimen",
        object_id=41,
        patient_id=patient_a.pk,
        changes={"dose_mg": {"old": "2.5", "new": "5"}},
        detail={"source": "portal"},
    )
    page = auditor_portal.get(f"{HOME}?object_type=regimen&object_id=41").content.decode()
    cells = page[page.index(f'id="event-{row.sequence}"') :]
    cells = cells[: cells.index("</tr>")]
    for text in (clinician_a.username, "clinician", "Update", "regimen", "41", "success"):
        assert text in cells
    assert str(patient_a.pk) in cells and "2.5 → 5" in cells and "portal" in cells


def test_pages_follow_the_journal_by_sequence_without_gaps_or_repeats(auditor_portal, db):
    for number in range(120):
        event(action="update", object_type="regimen", object_id=number)
    matching = [
        e.sequence for e in reversed(everything()) if e.action == "update"
    ]  # the reads the pages journal are not updates
    seen, url = [], f"{HOME}?action=update"
    while url:
        response = auditor_portal.get(url)
        page = shown(response)
        assert 0 < len(page) <= 50
        seen += page
        older = re.search(r'href="\?([^"]*before=\d+)"', response.content.decode())
        url = f"{HOME}?{older.group(1).replace('&amp;', '&')}" if older else None
    assert seen == matching
    newer = auditor_portal.get(f"{HOME}?action=update&after={matching[60]}")
    assert shown(newer) == matching[10:60]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("since=2026-03-05&until=2026-03-01", "until"),
        ("patient=abc", "patient"),
        ("patient=0", "patient"),
        ("patient=99999999999999999999999", "patient"),
        ("action=launch_missiles", "action"),
        ("outcome=maybe", "outcome"),
        ("actor=nobody-has-this-name", "actor"),
        ("before=abc", "before"),
        ("after=-3", "after"),
    ],
)
def test_bad_filter_input_is_a_400_naming_the_field_and_reads_nothing(
    auditor_portal, auditor, journal, query, field
):
    reads_before = AuditEvent.objects.filter(action="read", actor_id=auditor.pk).count()
    response = auditor_portal.get(f"{HOME}?{query}")
    page = response.content.decode()
    assert response.status_code == 400
    assert f'id="{field}-error"' in page or f"{field}: " in page
    assert shown(response) == []
    assert AuditEvent.objects.filter(action="read", actor_id=auditor.pk).count() == reads_before


def test_reading_the_journal_is_journalled_with_the_patients_shown(
    auditor_portal, auditor, journal, patient_a
):
    response = auditor_portal.get(f"{HOME}?patient={patient_a.pk}")
    sequences = shown(response)
    expected_patients = sorted(
        {p for e in AuditEvent.objects.filter(sequence__in=sequences) for p in e.patient_ids}
    )
    read = last_read(auditor)
    assert read.sequence > max(sequences)
    assert read.patient_ids == expected_patients and patient_a.pk in read.patient_ids
    assert read.detail["view"] == "portal.audit.search"
    assert read.detail["filters"] == {"patient": patient_a.pk}
    assert read.detail["shown"] == sequences


def test_an_empty_result_is_still_a_journalled_read_of_the_trail(auditor_portal, auditor, journal):
    response = auditor_portal.get(f"{HOME}?object_type=nothing-like-this")
    assert response.status_code == 200 and shown(response) == []
    read = last_read(auditor)
    assert read.patient_ids == [] and read.detail["filters"] == {"object_type": "nothing-like-this"}


# --- who may ------------------------------------------------------------------------------------


def verified_session(user) -> Client:
    """A portal session with a verified second factor, whatever the role (a patient cannot
    sign in to the portal; this is the session they would have if they somehow could)."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.mark.parametrize("role", ["clinician_a", "admin_user", "model_owner", "patient"])
def test_everyone_but_auditors_is_refused_and_the_refusal_is_journalled(request, role, journal):
    if role == "patient":
        user = request.getfixturevalue("patient_a").user
        client = verified_session(user)
    else:
        user = request.getfixturevalue(role)
        client = portal_client(user)
    reads_before = AuditEvent.objects.filter(action="read", object_type="audit_event").count()
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "auditor" in response.content.decode()
    assert client.post(EXPORTS, {}).status_code == 403
    assert client.post(VERIFY, {}).status_code == 403
    refusals = AuditEvent.objects.filter(action="refused", actor_id=user.pk)
    assert refusals.count() == len(PAGES) + 2
    assert AuditEvent.objects.filter(action="read", object_type="audit_event").count() == (
        reads_before
    )
    assert not AuditExport.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, db):
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/portal/login/")


# --- verification status ------------------------------------------------------------------------


def test_status_shows_the_head_the_last_signed_checkpoint_and_the_key_fingerprint(
    settings, auditor_portal, auditor
):
    settings.AUDIT_CHECKPOINT_EVERY = 4
    for number in range(9):
        event(action="update", object_type="regimen", object_id=number)
    seal_checkpoints()
    last = Checkpoint.objects.order_by("-index").first()
    assert last.index == 2
    head = AuditEvent.objects.order_by("-sequence").first()
    page = auditor_portal.get(VERIFY).content.decode()
    published = hashlib.sha256(base64.b64decode(last.public_key)).hexdigest()
    assert f'id="key-fingerprint">{published}<' in page
    for value in (last.merkle_root, last.chain_hash, last.signature, f"{last.first_sequence}"):
        assert value in page
    assert "verifies" in page and "does not verify" not in page
    assert head.hash in page and f"<code>{head.sequence}</code>" in page
    read = last_read(auditor)
    assert read.detail["view"] == "portal.audit.status" and read.detail["checkpoint"] == 2


def test_verify_now_journals_its_result_and_the_status_shows_it(auditor_portal, auditor, journal):
    head = AuditEvent.objects.order_by("-sequence").first().sequence
    events = AuditEvent.objects.count()  # on PostgreSQL sequences are not reused: not the head
    response = auditor_portal.post(VERIFY, {})
    assert response.status_code == 302 and response["Location"] == VERIFY
    recorded = last_read(auditor)
    result = recorded.detail["verification"]
    assert recorded.detail["view"] == "portal.audit.verify"
    assert result["ok"] is True and result["full"] is True
    assert result["head_sequence"] == head and result["verified"] == events
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] >= 0
    page = auditor_portal.get(VERIFY).content.decode()
    assert "intact" in page and f"#{recorded.sequence}" in page and "ms" in page


def test_a_quick_verification_is_shown_apart_from_the_last_full_one(
    auditor_portal, auditor, journal
):
    auditor_portal.post(VERIFY, {"quick": "1"})
    result = last_read(auditor).detail["verification"]
    assert result["full"] is False and result["ok"] is True
    page = auditor_portal.get(VERIFY).content.decode()
    full = page[page.index("Last full verification") : page.index("Latest quick verification")]
    assert "None recorded" in full and "quick (from the last valid checkpoint)" in page
    auditor_portal.post(VERIFY, {})
    page = auditor_portal.get(VERIFY).content.decode()
    assert "Latest quick verification" not in page and "full (every entry recomputed)" in page


def tamper(statement: str, params: list) -> None:
    """What an attacker with DDL rights does: drop the triggers, rewrite, put them back (so
    that appends afterwards still advance the chain head)."""
    with connection.cursor() as cursor:
        for ddl in uninstall_sql(connection.vendor):
            cursor.execute(ddl)
        cursor.execute(statement, params)
        for ddl in install_sql(connection.vendor):
            cursor.execute(ddl)


def test_verify_now_names_the_first_tampered_entry(auditor_portal, auditor):
    for number in range(10):
        event(action="update", object_type="regimen", changes={"n": {"old": number, "new": 0}})
    tampered = AuditEvent.objects.filter(object_type="regimen").order_by("sequence")[4].sequence
    tamper(
        "UPDATE audit_auditevent SET entry = replace(entry, '\"old\":4', '\"old\":5') "
        "WHERE sequence = %s",
        [tampered],
    )
    assert auditor_portal.post(VERIFY, {}).status_code == 302
    result = last_read(auditor).detail["verification"]
    assert result["ok"] is False and result["failure_sequence"] == tampered
    page = auditor_portal.get(VERIFY).content.decode()
    assert f"sequence {tampered}" in page and "broken" in page


# --- exports ------------------------------------------------------------------------------------


def test_an_export_made_in_the_portal_downloads_and_verifies_offline(
    auditor_portal, auditor, journal, patient_a, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = auditor_portal.post(EXPORTS, {"patient": str(patient_a.pk), "formats": ["csv"]})
    assert response.status_code == 302
    export = AuditExport.objects.get()
    assert export.status == "done", export.error
    assert (export.requested_by, export.patient_id) == (auditor, patient_a.pk)

    listing = auditor_portal.get(EXPORTS).content.decode()
    link = f"/portal/audit/exports/{export.pk}/download/"
    assert link in listing and auditor.username in listing
    listed = last_read(auditor)
    assert listed.detail["view"] == "portal.audit.exports" and listed.patient_ids == [patient_a.pk]

    archive = auditor_portal.get(link)
    assert archive.status_code == 200 and archive["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as bundle:
        bundle.extractall(tmp_path / "downloaded")
    directory = tmp_path / "downloaded" / f"audit-export-{export.pk}"
    summary = verify_export(directory)
    head = export.manifest["chain_head"]["sequence"]
    expected = [
        e.sequence for e in everything() if e.sequence <= head and patient_a.pk in e.patient_ids
    ]
    assert summary.events == len(expected)
    lines = (directory / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == expected
    assert (directory / "events.csv").exists()
    assert AuditEvent.objects.filter(
        action="export_download", actor=auditor, object_id=str(export.pk)
    ).exists()
    status = auditor_portal.get(VERIFY).content.decode()
    assert f'id="key-fingerprint">{summary.fingerprint}<' in status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"patient": "424242"}, "patient"),
        ({"patient": "abc"}, "patient"),
        ({"formats": ["xml"]}, "formats"),
    ],
)
def test_bad_export_input_is_a_400_naming_the_field_and_creates_nothing(
    auditor_portal, journal, body, field
):
    response = auditor_portal.post(EXPORTS, body)
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.content.decode()
    assert not AuditExport.objects.exists()
    assert not AuditEvent.objects.filter(action="export").exists()


def test_an_unfinished_export_has_nothing_to_download(auditor_portal, auditor):
    pending = AuditExport.objects.create(requested_by=auditor)
    assert auditor_portal.get(f"/portal/audit/exports/{pending.pk}/download/").status_code == 404
    missing = auditor_portal.get(f"/portal/audit/exports/{uuid.uuid4()}/download/")
    assert missing.status_code == 404
    assert not AuditEvent.objects.filter(action="export_download").exists()


# --- the review report --------------------------------------------------------------------------


@pytest.fixture
def to_review(clinician_a, patient_a, patient_b, model_owner):
    """One of each thing to review this week, one emergency access last week, and decisions
    and promotions that need no review."""
    with time_machine.travel(LAST_WEEK, tick=False):
        old = event(
            action="emergency_access",
            actor=clinician_a,
            object_type="patient",
            patient_id=patient_b.pk,
            detail={"reason": "unconscious in A&E"},
        )
    rejected = make_recommendation(patient_a)
    decisions.decide_recommendation(
        recommendation=rejected,
        actor=clinician_a,
        action="reject",
        reason="dizzy at home",
        password=PASSWORD,
    )
    approved = make_recommendation(patient_a)
    decisions.decide_recommendation(
        recommendation=approved, actor=clinician_a, action="approve", reason="ok", password=PASSWORD
    )
    waived = event(
        action="model_promoted",
        actor=model_owner,
        object_type="model_version",
        object_id=3,
        detail={"version": "gbr-3", "waived_gates": ["fairness"], "waiver_reason": "small group"},
    )
    event(
        action="model_promoted",
        actor=model_owner,
        object_type="model_version",
        object_id=4,
        detail={"version": "gbr-4", "waived_gates": [], "waiver_reason": ""},
    )
    training = event(
        action="nonprivate_training_waived",
        actor=model_owner,
        object_type="model_version",
        object_id=5,
        patient_ids=[patient_a.pk],
        detail={"version": "gbr-5", "real_patients": 1, "reason": "pilot"},
    )
    refused = record_refusal(
        actor=clinician_a,
        attempted="enrol_patient",
        message="Only administrators enrol patients.",
        patient_id=patient_b.pk,
    )
    return {
        "old": old,
        "rejected": AuditEvent.objects.get(
            action="decision", object_id=str(rejected.pk), outcome="success"
        ),
        "approved": AuditEvent.objects.get(
            action="decision", object_id=str(approved.pk), outcome="success"
        ),
        "waived": waived,
        "training": training,
        "refused": refused,
    }


def section(page: str, key: str) -> str:
    start = page.index(f'id="{key}"')
    return page[start : page.index("</section>", start)]


def sequences_in(html: str) -> set[int]:
    return {int(s) for s in re.findall(r"<code>(\d+)</code></a>", html)}


def test_the_review_report_lists_what_to_review_and_nothing_else(
    auditor_portal, auditor, to_review
):
    page = auditor_portal.get(REVIEW).content.decode()
    assert sequences_in(section(page, "overrides")) == {to_review["rejected"].sequence}
    assert "dizzy at home" in section(page, "overrides")
    assert sequences_in(section(page, "gate_waivers")) == {to_review["waived"].sequence}
    assert "fairness" in section(page, "gate_waivers")
    assert sequences_in(section(page, "training_waivers")) == {to_review["training"].sequence}
    assert sequences_in(section(page, "refusals")) == {to_review["refused"].sequence}
    assert "Only administrators enrol patients." in section(page, "refusals")
    assert sequences_in(section(page, "emergency_access")) == {to_review["old"].sequence}
    read = last_read(auditor)
    shown_rows = AuditEvent.objects.filter(
        sequence__in=[s for sequences in read.detail["shown"].values() for s in sequences]
    )
    assert read.detail["view"] == "portal.audit.review"
    assert read.patient_ids == sorted({p for e in shown_rows for p in e.patient_ids})


def test_the_review_report_keeps_to_its_dates(auditor_portal, auditor, to_review):
    this_week = auditor_portal.get(f"{REVIEW}?since={NEXT_DAY}")
    page = this_week.content.decode()
    assert "None recorded in these dates" in section(page, "emergency_access")
    assert sequences_in(section(page, "overrides")) == {to_review["rejected"].sequence}
    assert last_read(auditor).detail["filters"] == {"since": NEXT_DAY}
    last_week = auditor_portal.get(f"{REVIEW}?since={DAY}&until={DAY}").content.decode()
    assert sequences_in(section(last_week, "emergency_access")) == {to_review["old"].sequence}
    assert sequences_in(section(last_week, "overrides")) == set()


def test_bad_review_dates_are_a_400_naming_the_field(auditor_portal, to_review):
    response = auditor_portal.get(f"{REVIEW}?since=2026-03-09&until=last-week")
    assert response.status_code == 400
    assert 'id="until-error"' in response.content.decode()


def test_the_review_lists_privileged_invitations_and_second_factor_resets(
    auditor, admin_user, clinician_a
):
    from accounts import staff
    from audit.workspace import review_report

    staff.invite_staff(username="new.owner", role="model_owner", actor=admin_user)
    staff.invite_staff(username="dr.new", role="clinician", display_name="Dr New", actor=admin_user)
    staff.reset_second_factor(user=clinician_a, reason="lost phone", actor=admin_user)
    sections = {section.key: section for section in review_report().sections}
    invited = [item.summary for item in sections["privileged_invitations"].items]
    assert len(invited) == 1 and "new.owner" in invited[0] and "model_owner" in invited[0]
    resets = [item.summary for item in sections["second_factor_resets"].items]
    assert resets == [f"user {clinician_a.pk}: reason: lost phone"]
