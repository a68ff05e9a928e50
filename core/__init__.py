"""Shared kernel below every app: request context, domain error base, strict API input, and the
authorization controller (``core.authz``: the mechanism; each app's ``rules.py`` the rules).

It holds no models and imports no app, so every app may use it (it is the bottom layer of the
import-linter contract).
"""
