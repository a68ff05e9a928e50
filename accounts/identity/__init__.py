"""Identity for every client: the OAuth 2.0 / OpenID Connect server (django-oauth-toolkit with our
validator), SMART scopes, client registration, the first-party token endpoint, and revocation.
See docs/identity.md."""
