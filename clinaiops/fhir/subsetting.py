"""``_summary`` and ``_elements`` (search.html#summary, search.html#elements), on read and
search.

Which elements are "summary" and which are mandatory comes from the R4B models of
``fhir.resources`` (their ``summary_element_property`` and ``element_required`` marks, the
``isSummary`` and ``min`` of the specification), not from a list kept here. A subsetted
resource carries the ``SUBSETTED`` tag, as the specification requires, so that no client
takes it for the whole resource (its ``versionId`` is still that of the whole).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


@dataclass(frozen=True)
class _Marks:
    summary: frozenset[str]  # element names (choice elements under their [x] base too)
    mandatory: frozenset[str]
    choice_base: dict[str, str]  # valueQuantity → value


@functools.cache
def _marks(resource_type: str) -> _Marks:
    from fhir.resources.R4B import get_fhir_model_class  # ~200 modules: only when asked

    summary, mandatory, choice_base = set(), set(), {}
    for name, info in get_fhir_model_class(resource_type).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        element = info.alias or name
        base = extra.get("one_of_many")
        if base:
            choice_base[element] = str(base)
        if extra.get("summary_element_property"):
            summary.add(element)
        if info.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            mandatory.add(element)
    return _Marks(frozenset(summary), frozenset(mandatory), choice_base)


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    return resource | {"meta": meta}


def subset(
    resource: dict[str, Any], summary: str | None, elements: tuple[str, ...] | None
) -> dict[str, Any]:
    """The resource as ``_summary`` (true, text, data; None or false: whole) or ``_elements``
    (those elements, the mandatory ones and id/meta) ask; ``_elements`` wins when both are
    sent. Unknown element names select nothing."""
    if not elements and summary in (None, "false", "count"):
        return resource
    marks = _marks(resource["resourceType"])

    def named(key: str, names) -> bool:
        return key in names or marks.choice_base.get(key) in names

    if elements:
        wanted = set(elements)
        kept = {
            key: value
            for key, value in resource.items()
            if key in _ALWAYS or named(key, wanted) or named(key, marks.mandatory)
        }
    elif summary == "true":
        kept = {
            key: value
            for key, value in resource.items()
            if key in _ALWAYS or named(key, marks.summary)
        }
    elif summary == "text":
        kept = {
            key: value
            for key, value in resource.items()
            if key in (*_ALWAYS, "text") or named(key, marks.mandatory)
        }
    else:  # data: all but the narrative
        kept = {key: value for key, value in resource.items() if key != "text"}
    return _tagged(kept)
