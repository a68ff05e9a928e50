"""QR codes the portal shows (an authenticator's enrolment, a one-time link, a phone's
activation), as inline SVG made on the server: nothing is loaded from elsewhere."""

from __future__ import annotations

import base64
import io

import qrcode
import qrcode.image.svg


def qr_svg(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def authenticator_enrolment(device) -> dict[str, str]:
    """What a page shows to enrol a TOTP device: its QR code and its key typed by hand."""
    return {
        "qr_svg": qr_svg(device.config_url),
        "secret": base64.b32encode(device.bin_key).decode(),
    }
