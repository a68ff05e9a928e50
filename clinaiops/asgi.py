"""ASGI entry point: HTTP through Django, websockets through Channels consumers under /ws/."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinaiops.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from clinaiops.websocket import (  # noqa: E402
    TokenAuthMiddleware,
    origin_checked,
    websocket_urlpatterns,
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Django URL patterns of ASGI apps, which the channels stubs cannot express.
        "websocket": origin_checked(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
    }
)
