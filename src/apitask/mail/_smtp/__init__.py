"""SMTP delivery (needs aiosmtplib, from the ``mail`` extra).

* ``_client``: :class:`SMTPClient`, sending one Message per transaction.
* ``_pool``: the pool of open SMTP connections the client reuses.
* ``_errors``: aiosmtplib's errors classified as transient or permanent.
* ``_mime``: a Message written as the bytes of one RFC 5322 mail.

Private: the public names are re-exported by :mod:`apitask.mail`.
"""
