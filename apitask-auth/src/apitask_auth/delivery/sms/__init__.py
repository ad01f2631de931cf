"""Text messages (SMS, WhatsApp) through apitask, as mail goes.

:mod:`.chain` is the :class:`~apitask_auth.delivery.texter.Texter` the app
builds from the settings; :mod:`.task` the durable task (``sms.<purpose>``);
:mod:`.message` what is sent and stored; :mod:`.templates` GoTrue's text
templates; :mod:`.provider` the provider protocol and choice; :mod:`.twilio`
Twilio's Messages API; :mod:`.devinbox` dev mode's catcher.
"""

from __future__ import annotations

from .chain import SmsChain, texter_for
from .errors import PermanentSmsError, SmsError, TransientSmsError
from .message import TextMessage
from .task import SmsTask

__all__ = [
    "PermanentSmsError",
    "SmsChain",
    "SmsError",
    "SmsTask",
    "TextMessage",
    "TransientSmsError",
    "texter_for",
]
