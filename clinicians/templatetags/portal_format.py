"""Formatting for the portal: doses as clinicians write them (2.5 mg, 10 mg)."""

from decimal import Decimal, InvalidOperation

from django import template

from patients.contact import tel_href

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


@register.filter
def tel(phone) -> str:
    """A stored contact phone as a ``tel:`` link (``patients.contact.tel_href``)."""
    return tel_href(str(phone or ""))
