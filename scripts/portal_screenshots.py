"""Screenshots of the clinician portal for the README: the worklist, a patient's chart and a
review card, on a desktop (1440×900) and a phone (390×844), written to docs/screenshots/.

    make screenshots        (or: .venv/bin/python scripts/portal_screenshots.py [--quick])

It builds a fresh demo clinic in a temporary data directory (``manage.py migrate`` and
``seed_demo``, with the demo model so the review card shows its SHAP explanation: about three
minutes; ``--quick`` skips the model and the card shows the protocol's figures instead), serves it
with daphne as ``make demo`` does, signs in as the demo clinician with the password and the
authenticator code, and drives Debian's Chromium with Playwright. Your own database is not
touched. A script rather than a management command: it needs Playwright and a browser, which
are development tools, not part of the application.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - needs ROOT on the path

VIEWPORTS = {"1440x900": (1440, 900), "390x844": (390, 844)}
CLINICIAN = "clinician1"  # the demo's first clinician (North clinic)


def totp_now(key_base32: str, *, step: int = 30, digits: int = 6) -> str:
    """The authenticator's current code (RFC 6238, SHA-1), as the demo's phone would show it."""
    key = base64.b32decode(key_base32)
    counter = struct.pack(">Q", int(time.time()) // step)
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10**digits:0{digits}d}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - manage.py of this checkout, fixed commands
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def wait_until_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback server
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def shoot(base: str, logins: dict, out: Path, *, full_page: bool = False) -> list[Path]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    clinician = next(row for row in logins["clinicians"] if row["username"] == CLINICIAN)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(
            viewport={"width": 1440, "height": 900}, locale="en-GB", timezone_id="Europe/London"
        )
        page.set_default_timeout(30_000)
        page.goto(f"{base}/portal/")
        page.fill("#id_username", CLINICIAN)
        page.fill("#id_password", logins["password"])
        page.click("button[type=submit]")
        page.wait_for_url("**/portal/login/verify/")
        page.fill("#id_code", totp_now(clinician["totp_key"]))
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/portal/")
        # The first proposal waiting for review: its chart, and its card.
        review = page.locator("a[href*='#rec-']").first.get_attribute("href")
        chart, card = review.split("#")
        for size, (width, height) in VIEWPORTS.items():
            page.set_viewport_size({"width": width, "height": height})
            for name, path, anchor in (
                ("worklist", "/portal/", None),
                ("chart", chart, None),
                ("review-card", chart, card),
            ):
                page.goto(f"{base}{path}")
                page.wait_for_load_state("load")
                # The live line says "Live updates on" once the websocket is open (a picture
                # without it is still a picture).
                with contextlib.suppress(PlaywrightError):
                    page.wait_for_selector("body[data-live=connected]", timeout=5_000)
                # The review card at the top; a page's own content at the top when the live
                # banners above it take more than a quarter of the screen.
                page.locator(f"#{anchor or 'main'}").evaluate(
                    """(el, always) => {
                        if (always || el.getBoundingClientRect().top > innerHeight / 4) {
                            el.scrollIntoView();
                        }
                    }""",
                    bool(anchor),
                )
                target = out / f"{name}-{size}.png"
                page.screenshot(path=str(target), full_page=full_page and not anchor)
                written.append(target)
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--quick", action="store_true", help="no demo model (the card shows no SHAP bars)"
    )
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument(
        "--full-page", action="store_true", help="whole pages, not the first screenful"
    )
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clinaiops-screenshots-") as data_dir:
        env = {
            **os.environ,
            "CLINAIOPS_DATA_DIR": data_dir,
            "DEBUG": "0",
            "SECURE_COOKIES": "0",
        }
        for name in ("DATABASE_URL", "REDIS_URL"):  # always the embedded stack
            env.pop(name, None)
        print(f"Seeding a demo clinic in {data_dir} …", flush=True)
        manage(env, "migrate", "--noinput", "-v", "0")
        seed = ["seed_demo", "--patients", str(options.patients)]
        manage(env, *seed, *([] if options.quick else ["--model"]))
        logins = json.loads(manage(env, "seed_demo", "--if-empty", "--json"))
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
            [
                str(Path(sys.executable).with_name("daphne")),
                "--verbosity",
                "0",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "clinaiops.asgi:application",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base}/healthz")
            for path in shoot(base, logins, options.out, full_page=options.full_page):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
