"""Recipient validation, as GoTrue's API and its extended checks do.

* ``_address``: address syntax (GoTrue's ``validateEmail``) and the static checks.
* ``_resolver``: the DNS lookups of the host check, behind a small protocol.
* ``_service``: the HTTP validation service asked about each address.
* ``_validating_client``: :class:`ValidatingClient`, which applies all of them.

Private: the public names are re-exported by :mod:`apitask.mail`.
"""
