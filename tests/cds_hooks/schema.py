"""The CDS Hooks 2.0 JSON shapes, as JSON Schema written from the specification's tables
(cds-hooks.hl7.org/2.0: "Discovery", "CDS Service Response" → "Card Attributes", "Source",
"Suggestion", "Action", "Reasons for rejecting a card", "Link"; "Feedback"). REQUIRED fields are
required, enumerations closed; OPTIONAL fields typed; other members allowed (``extension``)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

CODING = {
    "type": "object",
    "required": ["code", "system"],
    "properties": {
        "code": {"type": "string", "minLength": 1},
        "system": {"type": "string", "minLength": 1},
        "display": {"type": "string"},
    },
}
# "If override reasons are present, the CDS Service SHALL populate a display value".
OVERRIDE_REASON = {**CODING, "required": ["code", "system", "display"]}
ACTION = {
    "type": "object",
    "required": ["type", "description"],
    "properties": {
        "type": {"enum": ["create", "update", "delete"]},
        "description": {"type": "string", "minLength": 1},
        "resource": {"type": "object", "required": ["resourceType"]},
        "resourceId": {"type": "string"},
    },
    # "When the type attribute is create, the resource attribute SHALL contain a new resource"
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "create"}}},
            "then": {"required": ["resource"]},
        }
    ],
}
SUGGESTION = {
    "type": "object",
    "required": ["label"],
    "properties": {
        "label": {"type": "string", "minLength": 1},
        "uuid": {"type": "string", "format": "uuid"},
        "isRecommended": {"type": "boolean"},
        "actions": {"type": "array", "items": ACTION},
    },
}
LINK = {
    "type": "object",
    "required": ["label", "url", "type"],
    "properties": {
        "label": {"type": "string", "minLength": 1},
        "url": {"type": "string", "pattern": "^https?://"},
        "type": {"enum": ["absolute", "smart"]},
        "appContext": {"type": "string"},
        "autolaunchable": {"type": "boolean"},
    },
    # "The appContext field should only be valued if the link type is smart".
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "absolute"}}},
            "then": {"not": {"required": ["appContext"]}},
        }
    ],
}
CARD = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string", "format": "uuid"},
        "summary": {"type": "string", "minLength": 1, "maxLength": 139},  # "<140-character"
        "detail": {"type": "string"},
        "indicator": {"enum": ["info", "warning", "critical"]},
        "source": {
            "type": "object",
            "required": ["label"],
            "properties": {
                "label": {"type": "string", "minLength": 1},
                "url": {"type": "string", "pattern": "^https?://"},
                "icon": {"type": "string", "pattern": "^https?://"},
                "topic": CODING,
            },
        },
        "suggestions": {"type": "array", "items": SUGGESTION},
        "selectionBehavior": {"enum": ["at-most-one", "any"]},
        "overrideReasons": {"type": "array", "items": OVERRIDE_REASON},
        "links": {"type": "array", "items": LINK},
    },
    # "If suggestions are present, selectionBehavior SHALL also be provided."
    "dependentRequired": {"suggestions": ["selectionBehavior"]},
}
RESPONSE = {
    "type": "object",
    "required": ["cards"],
    "properties": {
        "cards": {"type": "array", "items": CARD},
        "systemActions": {"type": "array", "items": ACTION},
    },
}
DISCOVERY = {
    "type": "object",
    "required": ["services"],
    "properties": {
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["hook", "description", "id"],
                "properties": {
                    "hook": {"type": "string", "minLength": 1},
                    "title": {"type": "string"},
                    "description": {"type": "string", "minLength": 1},
                    "id": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
                    "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                    "usageRequirements": {"type": "string"},
                },
            },
        }
    },
}


def errors(document: Any, schema: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def assert_cards_valid(response_json: Any) -> list[dict[str, Any]]:
    problems = errors(response_json, RESPONSE)
    assert not problems, problems
    return response_json["cards"]
