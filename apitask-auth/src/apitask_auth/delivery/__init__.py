"""How the service's messages leave it: always through apitask.

:mod:`.runtime` is where every message's task runs (inline, request scope,
worker pool or durable outbox: one pool, one outbox, one in-process worker
for all kinds); :mod:`.mailer` is the one door handlers use for mail and
:mod:`.mail_chain` assembles it (SMTP or the dev inbox); :mod:`.texter` is
the same door for text messages (SMS, WhatsApp) and :mod:`.sms` assembles it
(Twilio or the dev inbox); :mod:`.notifications` sends the account-change
mails; :mod:`.devinbox` is dev mode's catcher of mail and texts.
"""
