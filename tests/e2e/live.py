"""A daphne server for browser tests that need websockets (``ChannelsLiveServerTestCase``), with
tasks run in-process in the server: there is no Celery worker in these tests, whatever the stack.
The server process is forked when the class is set up, so this is set before."""

from __future__ import annotations

import json
import urllib.request

from channels.testing import ChannelsLiveServerTestCase

from tests.conftest import PASSWORD


class EagerChannelsLiveServer(ChannelsLiveServerTestCase):
    serve_static = False

    @classmethod
    def setUpClass(cls):
        from clinaiops.celery import app

        cls._eager_before = app.conf.task_always_eager
        app.conf.task_always_eager = True
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        from clinaiops.celery import app

        app.conf.task_always_eager = cls._eager_before

    def _post(self, path: str, body: dict, token: str | None = None) -> dict:
        """A JSON POST to the live server, as a phone or an EHR sends it."""
        request = urllib.request.Request(
            self.live_server_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read() or b"{}")

    def _token(self, user) -> str:
        body = {"username": user.username, "password": PASSWORD}
        return self._post("/api/v1/auth/token/", body)["access"]
