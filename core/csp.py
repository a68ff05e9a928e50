"""The Content-Security-Policy's one widening per response: a page whose form is answered with a
redirect to another origin — the SMART consent page (the code goes to the app's redirect URI),
the chart's "Open in app" (the EHR launch goes to the app's launch URI).

CSP's ``form-action`` governs where a submitted form may lead, redirects included, and the policy
says ``'self'`` (``settings.CONTENT_SECURITY_POLICY``): without this, the browser stops the
redirect. Only the origins of the URIs the page's own forms lead to are added, on that page only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.http import HttpResponseBase

# What a CSP source expression may hold here: a scheme, a host (name or IPv6 literal) and a port.
# Anything else (spaces, quotes, semicolons) could end the directive: such a URI adds nothing.
SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
NETLOC = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def origin_source(uri: str) -> str | None:
    """``uri``'s origin as a CSP source (``https://app.example:8443``), the bare scheme of a
    native app's redirect (``org.clinaiops.app:``), or None when it is neither."""
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not SCHEME.fullmatch(scheme):
        return None
    if not parts.netloc:
        # A native app's private-use scheme is a reverse domain name (RFC 8252 §7.1): that
        # excludes javascript:, data: and the like.
        return f"{scheme}:" if "." in scheme else None
    if "@" in parts.netloc or not NETLOC.fullmatch(parts.netloc):
        return None
    return f"{scheme}://{parts.netloc}"


def allow_form_redirects_to(response: HttpResponseBase, uris: Iterable[str]) -> HttpResponseBase:
    """Add the origins of ``uris`` to ``form-action`` of ``response``'s policy (django-csp reads
    ``_csp_update``, as its ``csp_update`` decorator sets it)."""
    sources = sorted({source for source in map(origin_source, uris) if source})
    if sources:
        update: dict[str, list[str]] = dict(getattr(response, "_csp_update", None) or {})
        update["form-action"] = [*update.get("form-action", []), *sources]
        setattr(response, "_csp_update", update)  # noqa: B010 - the middleware's own attribute
    return response
