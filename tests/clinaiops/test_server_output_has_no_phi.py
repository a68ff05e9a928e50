"""The server's whole output, started as ``make demo`` starts it, carries no URL: a search by name
(``/fhir/Patient?family=…``) must not reach stdout through daphne's own access log. The app's
JSON access log (route pattern, status, timing) is the one access log.

The daphne command is read from the Makefile itself, so the test follows what it runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEARCHES = ("/fhir/Patient?family=Varga&given=Rae", "/api/v1/patients/?search=Varga")
SECRETS = ("Varga", "Rae", "family=", "given=", "search=")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def makefile_server_command(host: str, port: int) -> str:
    """The Makefile's daphne line, with make's variables filled in as make would."""
    [line] = [
        line.strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if re.search(r"/daphne\s", line)
    ]
    for name, value in {"BIN": str(BIN), "HOST": host, "PORT": str(port)}.items():
        line = line.replace(f"$({name})", value)
    assert "$(" not in line, f"unknown make variable in {line!r}"
    return line.replace("$$", "$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(port: int, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"daphne exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("daphne did not listen in time")


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-output")


@pytest.fixture(scope="module")
def server_env(data_dir) -> dict[str, str]:
    """The embedded stack in a fresh data directory (never the test run's database, nor a
    DATABASE_URL or REDIS_URL of the environment), with a migrated SQLite database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL"}
    }
    # Unbuffered, so that whatever the server writes is in the capture when it is stopped.
    env |= {"CLINAIOPS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env


def test_daphne_as_the_makefile_starts_it_writes_no_url_and_the_json_access_log(
    server_env, data_dir
):
    port = _free_port()
    command = makefile_server_command("127.0.0.1", port)
    output = data_dir / "server-output.txt"
    with output.open("wb") as capture:
        server = subprocess.Popen(  # noqa: S602 - the Makefile's recipe line, run by a shell as make does
            command,
            shell=True,
            executable="/bin/bash",
            cwd=ROOT,
            env=server_env,
            stdout=capture,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the shell and daphne in one process group, stopped together
        )
        try:
            _wait_until_listening(port, server)
            statuses = [_get(f"http://127.0.0.1:{port}{path}") for path in SEARCHES]
            # With a credential too (an invalid one: refused the same way, logged the same way).
            statuses += [
                _get(f"http://127.0.0.1:{port}{path}", {"Authorization": "Bearer not-a-token"})
                for path in SEARCHES
            ]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert statuses == [401, 401, 401, 401], statuses
    text = output.read_text(errors="replace")
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in the server's output:\n{text}"
    access = [
        entry
        for line in text.splitlines()
        if line.startswith("{") and (entry := json.loads(line)).get("logger") == "clinaiops.access"
    ]
    routes = sorted((entry["method"], entry["route"], entry["status"]) for entry in access)
    assert len(access) == len(SEARCHES) * 2, text
    assert [route for _, route, _ in routes].count("api/v1/patients/$") == 2, routes
    assert all(status == 401 for _, _, status in routes), routes
