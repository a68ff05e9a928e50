"""Once a second: CPU per process group (from /proc), Celery queue depth (Redis) and the
evaluations completed (PostgreSQL). Linux only (the /proc files)."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
QUEUES = ("celery", "safety")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, CPU seconds of the process and of its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is state (stat field 3): utime, stime, cutime, cstime are stat fields 14-17.
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return comm, ppid, (utime + stime + cutime + cstime) / TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


UNATTRIBUTED = "other clients"


def _descendants(root: int) -> list[int]:
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        try:
            stack.extend(
                int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            )
        except OSError:
            continue
    return pids


def _socket_inodes(port: int) -> set[str]:
    """Inodes of the local TCP sockets bound to ``port`` (the client side of a connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


class BackendTracker:
    """This database's PostgreSQL backends, every 50 ms: each backend's CPU as last seen, kept
    after it exits, so that short-lived connections (one per task) are counted too (all but
    their last < 50 ms). Backends are children of the postmaster; their title names the
    database and the client's port (``postgres: user database 127.0.0.1(port) …``), and the
    process holding that port tells whose queries they run: daphne's, the worker's, beat's."""

    def __init__(self, database: str, roots: dict[str, int], interval: float = 0.05) -> None:
        self.marker, self.roots, self.interval = f" {database} ", roots, interval
        self.seen: dict[tuple[int, str], list] = {}  # key -> [CPU seconds, owner]
        self.others: set[tuple[int, str]] = set()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.postmaster = self._postmaster()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pg-backends")

    @staticmethod
    def _postmaster() -> int | None:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                parent = _stat(stat[1]) if stat else None
                if stat and stat[0] == "postgres" and (not parent or parent[0] != "postgres"):
                    return int(entry.name)
        return None

    def _owner(self, title: str) -> str:
        match = re.search(r"\((\d+)\)", title)
        if not match:
            return UNATTRIBUTED
        inodes = _socket_inodes(int(match.group(1)))
        if not inodes:
            return UNATTRIBUTED
        for name, root in self.roots.items():
            for pid in _descendants(root):
                try:
                    for fd in os.scandir(f"/proc/{pid}/fd"):
                        target = os.readlink(fd.path)
                        if target.startswith("socket:[") and target[8:-1] in inodes:
                            return name
                except OSError:
                    continue
        return UNATTRIBUTED

    def _loop(self) -> None:
        if self.postmaster is None:
            return
        children = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children")
        while not self._stop.is_set():
            try:
                pids = [int(pid) for pid in children.read_text().split()]
            except OSError:
                return
            for pid in pids:
                try:
                    raw = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                fields = raw[raw.rindex(")") + 2 :].split()
                key = (pid, fields[19])  # starttime tells a reused pid apart
                if key in self.others:
                    continue
                cpu = (int(fields[11]) + int(fields[12])) / TICKS
                if key in self.seen:
                    with self.lock:
                        self.seen[key][0] = cpu
                    continue
                title = _cmdline(pid)
                if self.marker in title:
                    owner = self._owner(title)
                    with self.lock:
                        self.seen[key] = [cpu, owner]
                elif title.startswith("postgres: ") and "authentication" not in title:
                    self.others.add(key)
                # else: a fresh fork still has the postmaster's command line: look again.
            self._stop.wait(self.interval)

    def totals(self) -> dict[str, float]:
        """CPU seconds of this database's backends, by the process that owns the connection."""
        out = dict.fromkeys([*self.roots, UNATTRIBUTED], 0.0)
        with self.lock:
            for cpu, owner in self.seen.values():
                out[owner] = out.get(owner, 0.0) + cpu
        return out

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]  # cumulative CPU seconds per group
    queues: dict[str, int]
    evaluations: int


@dataclass
class Sampler:
    """Samples the groups: each of ``roots`` (name -> pid) with its descendants; PostgreSQL
    (every process of the server, and the backends of ``database`` alone); Redis; this process
    (the load generator)."""

    roots: dict[str, int]
    database: str
    database_url: str
    redis_url: str
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backends = BackendTracker(self.database, {**self.roots, "load generator": os.getpid()})

    def snapshot(self) -> dict[str, float]:
        table: dict[int, tuple[str, int, float]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat:
                    table[int(entry.name)] = stat
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)

        def tree(root: int) -> float:
            total, stack = 0.0, [root]
            while stack:
                pid = stack.pop()
                if pid in table:
                    total += table[pid][2]
                    stack.extend(children.get(pid, []))
            return total

        cpu = {name: tree(pid) for name, pid in self.roots.items()}
        postgres_all = redis = 0.0
        for pid, (comm, ppid, seconds) in table.items():
            if comm.startswith("postgres"):
                parent = table.get(ppid)
                if parent is None or not parent[0].startswith("postgres"):
                    postgres_all += tree(pid)  # the postmaster and everything it reaped
            elif comm.startswith("redis-server"):
                redis += seconds
        cpu["postgres (whole server)"] = postgres_all
        by_owner = self.backends.totals()
        cpu["postgres (backends of this database)"] = sum(by_owner.values())
        for owner, seconds in by_owner.items():
            cpu[f"postgres for {owner}"] = seconds
        cpu["redis-server"] = redis
        own = os.times()
        cpu["load generator (this process)"] = own.user + own.system
        return cpu

    def _loop(self) -> None:
        import psycopg
        import redis

        client = redis.Redis.from_url(self.redis_url)
        connection = psycopg.connect(self.database_url, autocommit=True)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                queues = {name: int(client.llen(name)) for name in QUEUES}
                queues["unacked (reserved or waiting for countdown)"] = int(client.hlen("unacked"))
                row = connection.execute(
                    "SELECT COALESCE(SUM(runs), 0) FROM clinicians_evaluationstate"
                ).fetchone()
                self.samples.append(
                    Sample(time.time(), self.snapshot(), queues, int(row[0] if row else 0))
                )
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            client.close()
            connection.close()

    def start(self) -> None:
        self.backends.start()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sampler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.backends.stop()

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def queue_total(sample: Sample) -> int:
    return sum(sample.queues.values())
