"""Formatting for the portal: doses as clinicians write them (2.5 mg, 10 mg)."""

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def dose(value) -> str:
    if value is None or value == "":
        return "—"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = format(number.normalize(), "f")
    return text
