"""The simulated clinic: phones on a compressed clock, clinicians reviewing, an auditor
exporting. One asyncio loop, one aiohttp session (keep-alive connection pool).

The phone's cadence (simulated minutes): an upload every 5–15 minutes of what was measured
since the last one — heart rate each minute, a blood pressure about every 30 minutes, one
steps count; 2 % of uploads are sent twice (the phone missed the answer: the second is counted
as duplicates); 1 % of the time a phone goes offline for 2–6 hours, then backfills them in one
upload.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

MINUTE = 60.0
REUPLOAD_SHARE = 0.02
OFFLINE_SHARE = 0.01
BACKFILL_MIN_READINGS = 60  # an upload this large is reported as a backfill


@dataclass
class Call:
    endpoint: str
    started: float  # wall clock (time.time())
    latency_ms: float
    status: int
    accepted: int = 0
    duplicates: int = 0
    readings: int = 0


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    # When each upload was due on the phones' schedule (wall clock), sent or not yet: what the
    # phones offered, against which the uploads served are judged. (A formula of phones ×
    # cadence overstated it: phones offline for hours offer nothing meanwhile.)
    due: list[float] = field(default_factory=list)

    def add(self, call: Call, error: str | None = None) -> None:
        self.calls.append(call)
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1


class Clock:
    """Simulated time runs ``compression`` times faster than real time and reaches the real
    present at ``real_end``: no reading is ever in the future."""

    def __init__(self, compression: float, duration: float) -> None:
        self.compression = compression
        self.real_start = time.time()
        self.real_end = self.real_start + duration
        self.sim_start = self.real_end - duration * compression

    def sim(self, real: float | None = None) -> float:
        real = time.time() if real is None else real
        return self.real_end - (self.real_end - real) * self.compression

    def real_for(self, sim: float) -> float:
        return self.real_end - (self.real_end - sim) / self.compression


async def _call(
    session: aiohttp.ClientSession,
    recorder: Recorder,
    endpoint: str,
    method: str,
    path: str,
    token: str,
    body: dict | None = None,
    readings: int = 0,
) -> tuple[int, dict]:
    started_wall, started = time.time(), time.perf_counter()
    status, payload, error = 0, {}, None
    try:
        async with session.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            status = response.status
            raw = await response.read()
            if response.content_type == "application/json" and raw:
                payload = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as problem:
        error = f"{endpoint}: {type(problem).__name__}"
    latency = (time.perf_counter() - started) * 1000
    if error is None and status >= 400:
        error = f"{endpoint}: HTTP {status}"
    call = Call(endpoint, started_wall, latency, status, readings=readings)
    if isinstance(payload, dict):
        call.accepted = int(payload.get("accepted", 0) or 0)
        call.duplicates = int(payload.get("duplicates", 0) or 0)
    recorder.add(call, error)
    return status, payload if isinstance(payload, dict) else {}


def _iso(sim: float) -> str:
    return datetime.fromtimestamp(sim, UTC).isoformat()


def batch(phone: dict, rng: random.Random, since: float, until: float, state: dict) -> list[dict]:
    """What the phone measured in (since, until]: heart rate each minute, a blood pressure when
    ~30 minutes have passed since the last, the day's steps so far."""
    key, (systolic, diastolic, heart) = phone["key"], phone["baseline"]
    device = f"{key}-watch"
    items: list[dict] = []
    minute = (int(since // MINUTE) + 1) * MINUTE
    while minute <= until:
        items.append(
            {
                "client_id": f"{key}-hr-{int(minute)}",
                "type": "heart_rate",
                "value": max(40, round(heart + rng.gauss(0, 6))),
                "unit": "/min",
                "measured_at": _iso(minute),
                "device_id": device,
            }
        )
        if minute - state["last_bp"] >= rng.uniform(25, 35) * MINUTE:
            state["last_bp"] = minute
            items.append(
                {
                    "client_id": f"{key}-bp-{int(minute)}",
                    "type": "blood_pressure",
                    "systolic": min(170, round(systolic + rng.gauss(0, 8))),
                    "diastolic": min(105, round(diastolic + rng.gauss(0, 5))),
                    "unit": "mm[Hg]",
                    "measured_at": _iso(minute),
                    "device_id": device,
                }
            )
        minute += MINUTE
    state["steps"] += rng.randint(0, 60) * max(1, int((until - since) // MINUTE))
    items.append(
        {
            "client_id": f"{key}-steps-{int(until)}",
            "type": "steps",
            "value": state["steps"],
            "unit": "{steps}",
            "measured_at": _iso(until),
            "device_id": device,
        }
    )
    return items


async def run_phone(
    session: aiohttp.ClientSession, phone: dict, clock: Clock, recorder: Recorder
) -> None:
    rng = random.Random(phone["key"] + str(clock.compression))
    last = clock.sim_start
    state = {"last_bp": last - rng.uniform(0, 30) * MINUTE, "steps": 0}
    # Phones are out of step with each other: the first upload falls anywhere in a cadence.
    due = last + rng.uniform(0, 15) * MINUTE
    while True:
        if rng.random() < OFFLINE_SHARE:
            due += rng.uniform(2, 6) * 3600  # offline: the next upload carries hours
        if due > clock.sim(clock.real_end):
            return
        wait = clock.real_for(due) - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        items = batch(phone, rng, last, due, state)
        endpoint = "upload (backfill)" if len(items) >= BACKFILL_MIN_READINGS else "upload"
        for offset in range(0, len(items), 5000):
            chunk = {"readings": items[offset : offset + 5000]}
            recorder.due.append(clock.real_for(due))
            await _call(
                session,
                recorder,
                endpoint,
                "POST",
                "/api/v1/readings/",
                phone["token"],
                chunk,
                len(chunk["readings"]),
            )
            if rng.random() < REUPLOAD_SHARE:
                recorder.due.append(clock.real_for(due))
                await _call(
                    session,
                    recorder,
                    "upload (re-upload)",
                    "POST",
                    "/api/v1/readings/",
                    phone["token"],
                    chunk,
                    len(chunk["readings"]),
                )
        last, due = due, due + rng.uniform(5, 15) * MINUTE


async def run_clinician(
    session: aiohttp.ClientSession, token: str, clock: Clock, recorder: Recorder, seed: int
) -> None:
    """A clinician working the review queue in real time: the queue, the alerts, a patient."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, 3))
    while time.time() < clock.real_end:
        _, queue = await _call(
            session,
            recorder,
            "clinician: review queue",
            "GET",
            "/api/v1/recommendations/?status=pending_review",
            token,
        )
        await _call(session, recorder, "clinician: alerts", "GET", "/api/v1/alerts/", token)
        results = queue.get("results", []) if isinstance(queue, dict) else []
        if results:
            patient = rng.choice(results).get("patient")
            await _call(
                session,
                recorder,
                "clinician: patient",
                "GET",
                f"/api/v1/patients/{patient}/",
                token,
            )
        await asyncio.sleep(rng.uniform(3, 8))


async def run_auditor(
    session: aiohttp.ClientSession,
    token: str,
    clock: Clock,
    recorder: Recorder,
    every: float,
    finished: list[float],
) -> None:
    """An auditor exporting the last hour of the journal as CSV, then downloading it."""
    await asyncio.sleep(5)
    while time.time() < clock.real_end - 10:
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        requested = time.perf_counter()
        status, export = await _call(
            session,
            recorder,
            "auditor: request export",
            "POST",
            "/api/v1/audit/exports/",
            token,
            {"since": since, "formats": ["csv"]},
        )
        state: dict = {}
        if status == 202 and export.get("id"):
            while time.time() < clock.real_end + 60:
                await asyncio.sleep(2)
                _, state = await _call(
                    session,
                    recorder,
                    "auditor: export status",
                    "GET",
                    f"/api/v1/audit/exports/{export['id']}/",
                    token,
                )
                if state.get("status") in ("done", "failed"):
                    break
            if state.get("status") == "done":
                finished.append(time.perf_counter() - requested)
                await _call(
                    session,
                    recorder,
                    "auditor: download",
                    "GET",
                    f"/api/v1/audit/exports/{export['id']}/download/",
                    token,
                )
        await asyncio.sleep(every)


async def drive(
    port: int,
    phones: list[dict],
    staff: dict,
    compression: float,
    duration: float,
    auditor_every: float,
) -> tuple[Recorder, Clock, list[float]]:
    recorder = Recorder()
    clock = Clock(compression, duration)
    exports: list[float] = []
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", connector=connector, timeout=timeout
    ) as session:
        tasks = [run_phone(session, phone, clock, recorder) for phone in phones]
        tasks += [
            run_clinician(session, token, clock, recorder, seed)
            for seed, token in enumerate(staff["clinicians"])
        ]
        auditor = staff["auditor"]
        tasks.append(run_auditor(session, auditor, clock, recorder, auditor_every, exports))
        await asyncio.gather(*tasks)
    return recorder, clock, exports
