"""The HTTP endpoints, one module per area of GoTrue's API.

* :mod:`.auth`: ``/signup``, ``/token``, ``GET /user``, ``/logout``.
* :mod:`.recovery`: the mail-only ways in: ``/recover``, ``/magiclink``, ``/otp``, ``/resend``.
* :mod:`.verify`: ``/verify``, the link clicked and the code typed.
* :mod:`.user`: ``PUT /user`` and ``/reauthenticate``.
* :mod:`.admin`: ``/invite``, ``/admin/generate_link``, ``/admin/users``.
* :mod:`.disabled`: GoTrue's answers for the features this service does not have.
* :mod:`.metrics`: ``/metrics``; :mod:`.dev_landing`: dev mode's landing page.

Handlers parse and check the request, then call :mod:`apitask_auth.accounts`
(the rules) and :mod:`apitask_auth.delivery` (the mail); they hold no SQL of
their own beyond the transaction they open.
"""
