"""The authorization server's pages and documents: sign-in, the authorize page with its SMART
launch context and patient picker, the token endpoint with its journal, discovery
(``/.well-known/smart-configuration``, ``/.well-known/openid-configuration``) and EHR launches.
The rules they apply live in ``accounts.identity``; this package knows patients, which accounts
may not import."""
