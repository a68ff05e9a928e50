"""JSON request bodies, with a bound on how deeply they nest.

Python's ``json`` parser recurses once per level of nesting: ten thousand nested arrays (a
40 kB body, no authentication needed to send it) exhaust the interpreter's stack, and a
``RecursionError`` is not a ``ValueError`` — DRF's parser lets it through as a 500. And a body
that does parse only a little below that limit makes everything that walks it afterwards
(validation, error flattening, the audit digest) recurse as deep. So a body nested deeper than
``MAX_JSON_DEPTH`` is refused here, before anything else sees it, as malformed input (400).

64 levels is System.Text.Json's default ``MaxDepth``; our deepest legitimate body — a FHIR
``transaction`` Bundle of Observations with coded components — nests about ten.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

MAX_JSON_DEPTH = 64


class JSONTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"the document nests deeper than {MAX_JSON_DEPTH} levels")


def is_deeper_than(document: Any, limit: int) -> bool:
    """Whether arrays and objects in ``document`` nest more than ``limit`` levels (``[]`` is one
    level). Iterative: the check must not recurse either."""
    if not isinstance(document, dict | list):
        return False
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def load_json(
    text: IO[str] | IO[bytes] | codecs.StreamReader, *, parse_constant: Callable[[str], Any]
) -> Any:
    """The document in ``text``; ``ValueError`` when it is not JSON, ``JSONTooDeep`` (a
    ``ValueError`` too) when it nests deeper than ``MAX_JSON_DEPTH``. ``parse_constant`` receives
    ``NaN``, ``Infinity`` and ``-Infinity``."""
    try:
        document = json.load(text, parse_constant=parse_constant)
    except RecursionError:  # deeper than the stack allows, so deeper than the limit too
        raise JSONTooDeep() from None
    if is_deeper_than(document, MAX_JSON_DEPTH):
        raise JSONTooDeep()
    return document


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (strict: ``NaN`` and ``Infinity`` are not JSON) with nesting bounded.
    Every body it cannot read is refused with ``refusal`` (a ``ParseError``: 400, code
    ``parse_error``, in the API's one error shape)."""

    def parse_constant(self, constant: str) -> Any:
        return strict_constant(constant)

    def refusal(self, reason: str) -> Exception:
        return ParseError(f"JSON parse error - {reason}")

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            # A text codec only: ``str.encode`` refuses bytes-to-bytes codecs such as
            # ``bz2_codec``, through which a small body would expand without bound.
            "".encode(encoding)
        except (LookupError, UnicodeError):
            raise self.refusal(f"unsupported charset {encoding!r} in Content-Type") from None
        try:
            return load_json(codecs.getreader(encoding)(stream), parse_constant=self.parse_constant)
        except ValueError as error:
            raise self.refusal(str(error)) from None
