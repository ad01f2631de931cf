"""The auth domain: users, sessions, tokens, and the rules that bind them.

* :mod:`.users`: users, identities, one-time tokens, and the user JSON.
* :mod:`.sessions`: sessions, refresh tokens, access tokens (JWTs).
* :mod:`.bodies`: the user and session JSON clients receive (Pydantic models,
  named by the routes so ``/openapi.json`` documents them).
* :mod:`.security`: secrets: OTPs, token hashes, passwords, PKCE.
* :mod:`.flows`: the steps the endpoints share (address and password rules,
  sending a token mail); :mod:`.email_change`, :mod:`.attempts` (how often a
  code may be tried), :mod:`.addresses` (one account per address),
  :mod:`.audit` (GoTrue's audit log).

Nothing here knows HTTP beyond raising :class:`apitask_auth.errors.APIError`.
"""
