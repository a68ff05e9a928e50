"""Session authentication for the API that counts a session only after its second factor."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework.authentication import SessionAuthentication


class VerifiedSessionAuthentication(SessionAuthentication):
    """The portal's JavaScript calls the API with its session; a session whose TOTP step was not
    completed (django-otp ``is_verified``) is treated as anonymous."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, auth = result
        is_verified = getattr(user, "is_verified", None)
        if not (is_verified and is_verified()):
            return None
        return user, auth


class VerifiedSessionScheme(SessionScheme):
    """OpenAPI: the verified session is documented as the cookie scheme it extends."""

    target_class = "clinaiops.api.authentication.VerifiedSessionAuthentication"
    name = "portalSession"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """OpenAPI: the bearer tokens of the authorization server (``accounts.identity``)."""

    target_class = "accounts.identity.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        prefix = "Bearer"  # the scheme's name, not a secret
        return build_bearer_security_scheme_object(header_name="AUTHORIZATION", token_prefix=prefix)
