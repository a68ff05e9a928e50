"""PDF for the record: the visit report (care team's and patient's versions) and the building
blocks the patient's copy of their record uses too (``clinaiops.record_export``).

Rendered with ReportLab (pure Python, wheels on PyPI, no system libraries — WeasyPrint would
need Pango at run time on every host that renders). Text is embedded in DejaVu Sans where the
system has it (Debian's fonts-dejavu-core: arrows, accents and most scripts), else in the Vera
font ReportLab ships; either way the text is real text, searchable and extractable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import reportlab
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from clinicians.portal.visit_report import (
    VisitReport,
    dip_text,
    figures_summary,
    patient_view,
    surge_text,
)

FONT_CANDIDATES = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (
        Path(reportlab.__file__).parent / "fonts" / "Vera.ttf",
        Path(reportlab.__file__).parent / "fonts" / "VeraBd.ttf",
    ),
)
FONT, FONT_BOLD = "ReportSans", "ReportSans-Bold"


def _register_fonts() -> None:
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    for regular, bold in FONT_CANDIDATES:
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont(FONT, str(regular)))
            pdfmetrics.registerFont(TTFont(FONT_BOLD, str(bold)))
            return
    raise RuntimeError("no TrueType font for PDF reports (ReportLab's Vera is missing)")


# --- blocks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Rows:
    """A table: the first row is the header."""

    rows: Sequence[Sequence[object]]


Block = Heading | Text | Rows


def render(title: str, blocks: Sequence[Block], *, footer: str = "") -> bytes:
    """One A4 document: a title, then the blocks in order."""
    _register_fonts()
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontName=FONT, fontSize=9.5)
    cell = ParagraphStyle("cell", parent=body, fontSize=8.5, leading=10.5)
    head = ParagraphStyle("head", parent=styles["Heading2"], fontName=FONT_BOLD, fontSize=12)
    top = ParagraphStyle("title", parent=styles["Title"], fontName=FONT_BOLD, fontSize=16)
    story: list = [Paragraph(escape(title), top)]
    for block in blocks:
        if isinstance(block, Heading):
            story.append(Paragraph(escape(block.text), head))
        elif isinstance(block, Text):
            story.append(Paragraph(escape(block.text), body))
        elif block.rows:
            data = [[Paragraph(escape(_cell(value)), cell) for value in row] for row in block.rows]
            width = (A4[0] - 30 * mm) / max(len(row) for row in data)
            table = Table(data, colWidths=width, repeatRows=1, hAlign="LEFT")
            table.setStyle(
                TableStyle(
                    [
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f6")),
                        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b8c2cc")),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ]
                )
            )
            story.append(table)
            story.append(Spacer(1, 3 * mm))
    buffer = io.BytesIO()

    def page_footer(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.drawString(15 * mm, 10 * mm, f"{footer}  ·  page {document.page}".strip(" ·"))
        canvas.restoreState()

    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=title,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
    )
    document.build(story, onFirstPage=page_footer, onLaterPages=page_footer)
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


# --- the visit report --------------------------------------------------------------------------


def _identity(report: VisitReport) -> str:
    p = report.patient
    mrn = f" · MRN {p.mrn}" if p.mrn else ""
    return f"{p.family_name}, {p.given_name} · born {p.born}{mrn}"


def _period(report: VisitReport) -> str:
    since = (
        "since the previous visit"
        if report.previous_visit is not None
        else "no earlier visit: the last 90 days"
    )
    return (
        f"{report.local_start:%Y-%m-%d %H:%M} to {report.local_end:%Y-%m-%d %H:%M} "
        f"({report.zone}; {since})"
    )


def care_team_pdf(report: VisitReport) -> bytes:
    numbers = figures_summary(report)
    zone = ZoneInfo(report.zone)
    blocks: list[Block] = [
        Text(_identity(report)),
        Text(
            f"Visit {report.visit.pk}: {report.visit.scheduled_at.astimezone(zone):%Y-%m-%d %H:%M}"
        ),
        Text(f"Period: {_period(report)}"),
        Heading("Home blood pressure"),
        Rows(
            [
                ("Figure", "Value"),
                ("Readings in use", numbers["readings"]),
                ("Mean", numbers["mean"]),
                ("Morning mean (04:00–11:59)", numbers["morning_mean"]),
                ("Evening mean (18:00–23:59)", numbers["evening_mean"]),
                (
                    f"Time in target range (< {report.target[0]}/{report.target[1]})",
                    _suffix(numbers["time_in_target_percent"], " %"),
                ),
                ("Systolic SD", _suffix(numbers["systolic_sd_mmhg"], " mmHg")),
                ("Systolic ARV", _suffix(numbers["systolic_arv_mmhg"], " mmHg")),
                ("Nocturnal dip (09–21 h vs 01–06 h)", dip_text(report)),
                ("Morning surge (06–10 h vs night before)", surge_text(report)),
                ("Adherence", _suffix(numbers["adherence_percent"], " %")),
            ]
        ),
        Heading("Dose changes"),
    ]
    if report.dose_decisions:
        blocks.append(
            Rows(
                [("When", "Change", "Decided by", "Decision", "Proposal and model", "Why")]
                + [
                    (
                        d.at.astimezone(zone),
                        d.text,
                        d.decided_by,
                        d.decision,
                        f"#{d.proposal_id} · {d.model_version}" if d.proposal_id else d.source,
                        "; ".join(x for x in (d.proposal_reason, d.reason) if x),
                    )
                    for d in report.dose_decisions
                ]
            )
        )
    else:
        blocks.append(Text("No change of the regimen in the period."))
    if report.reviewed_without_change:
        blocks += [
            Heading("Proposals reviewed without a change"),
            Rows(
                [("When", "Proposal", "Model", "Decided by", "Reason")]
                + [
                    (
                        r.at.astimezone(zone),
                        f"#{r.proposal_id} {r.medication} {r.current_dose_mg} → "
                        f"{r.proposed_dose_mg} mg",
                        r.model_version,
                        r.decided_by,
                        r.reason,
                    )
                    for r in report.reviewed_without_change
                ]
            ),
        ]
    blocks.append(Heading("Goals"))
    blocks.append(
        Rows(
            [("Goal", "Status", "Progress")]
            + [(g.text, g.status, g.progress.summary if g.progress else "") for g in report.goals]
        )
        if report.goals
        else Text("No goal in the period.")
    )
    blocks.append(Heading("Alerts"))
    blocks.append(
        Rows(
            [("Opened", "Alert", "How it ended")]
            + [
                (a.opened_at.astimezone(zone), f"{a.kind_label}: {a.message}", a.ended)
                for a in report.alerts
            ]
        )
        if report.alerts
        else Text("No alert in the period.")
    )
    blocks.append(Heading("Open questions (patient messages not answered yet)"))
    blocks.append(
        Rows(
            [("Sent", "Message")]
            + [(q.sent_at.astimezone(zone), q.body) for q in report.open_questions]
        )
        if report.open_questions
        else Text("None.")
    )
    return render(
        "Visit report",
        blocks,
        footer=f"ClinAIOps visit report · generated {report.generated_at:%Y-%m-%d %H:%M} UTC",
    )


def patient_pdf(report: VisitReport) -> bytes:
    view = patient_view(report)
    blocks: list[Block] = [
        Text(f"{report.patient.given_name} {report.patient.family_name}"),
        Text(
            f"From {report.local_start:%d %b %Y} to {report.local_end:%d %b %Y}, before your visit."
        ),
        Heading("Your blood pressure at home"),
        *[Text(line) for line in view["blood_pressure"]["summary"]],
        Heading("Your medicines"),
        Text(view["medicines"]["summary"]),
    ]
    for change in view["medicines"]["changes"]:
        note = f" Note: {change['note']}" if change["note"] else ""
        blocks.append(Text(f"{change['date']}: {change['change']}. {change['who']}.{note}"))
    for reviewed in view["medicines"]["reviewed_no_change"]:
        note = f" Note: {reviewed['note']}" if reviewed["note"] else ""
        blocks.append(Text(f"{reviewed['date']}: {reviewed['summary']}{note}"))
    blocks.append(Heading("Your goals"))
    blocks += [Text(f"{g['goal']} ({g['status']}). {g['progress']}") for g in view["goals"]] or [
        Text("No goals yet.")
    ]
    blocks.append(Heading("Alerts"))
    blocks += [Text(f"{a['date']}: {a['what']}. {a['outcome']}") for a in view["alerts"]] or [
        Text("None in this period.")
    ]
    blocks.append(Heading("Your questions still waiting for an answer"))
    blocks += [Text(q["text"]) for q in view["open_questions"]] or [Text("None.")]
    return render("Your visit summary", blocks, footer="ClinAIOps · your visit summary")


def _suffix(value: object, unit: str) -> str:
    return "—" if value is None else f"{value}{unit}"
