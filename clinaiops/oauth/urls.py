"""``/oauth/``: the authorization server (django-oauth-toolkit's views where ours add nothing).
Namespaced ``oauth2_provider`` because the library reverses its own names."""

from django.urls import path, re_path
from oauth2_provider import views as dot

from clinaiops.oauth import discovery, views

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", views.AuthorizeView.as_view(), name="authorize"),
    path("token/", views.JournalledTokenView.as_view(), name="token"),
    path("revoke_token/", dot.RevokeTokenView.as_view(), name="revoke-token"),
    path("userinfo/", dot.UserInfoView.as_view(), name="user-info"),
    path(".well-known/jwks.json", dot.JwksInfoView.as_view(), name="jwks-info"),
    re_path(
        r"^\.well-known/openid-configuration/?$",
        discovery.openid_configuration,
        name="oidc-connect-discovery-info",
    ),
]
