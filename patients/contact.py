"""How a patient is reached: the contact phone as a link a phone or softphone dials."""

from __future__ import annotations


def tel_href(phone: str) -> str:
    """A ``tel:`` link of a stored contact phone: its digits, a leading + kept, and the trunk
    "(0)" of an international number written the European way (+44 (0)20 …) dropped."""
    international = phone.strip().startswith("+")
    if international:
        phone = phone.replace("(0)", "")
    digits = "".join(ch for ch in phone if ch.isascii() and ch.isdigit())
    if not digits:
        return ""
    return "tel:" + ("+" if international else "") + digits
