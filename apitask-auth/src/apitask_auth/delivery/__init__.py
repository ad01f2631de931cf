"""How the service's messages leave it: always through apitask.

:mod:`.mailer` is the one door handlers use; :mod:`.mail_chain` assembles the
chain the settings ask for (inline, request scope, worker pool or durable
outbox; SMTP or the dev inbox); :mod:`.texter` is the same door for text
messages (SMS, WhatsApp); :mod:`.notifications` sends the account-change
mails; :mod:`.devinbox` is dev mode's mail catcher.
"""
