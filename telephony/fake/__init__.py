"""An in-repo fake Twilio: REST API on loopback, signed webhooks, and a TwiML-following call simulator.

Used by tests, the ``hotline simulate`` command and drills.  It plays Twilio independently of
our own telephony code (it signs with twilio's ``RequestValidator`` and parses TwiML itself).

    with FakeTwilio() as fake:
        fake.configure_number(NumberConfig("+18005550100", voice_url="https://app.example/twilio/voice/incoming"))
        async with CallSimulator(fake, app=asgi_app) as sim:
            call = await sim.call("+15551230000", "+18005550100", Party(digits=("1",)))
            assert call.said[0] == "Welcome"
"""

from telephony.fake.documents import TwimlDocument, TwimlProblem
from telephony.fake.scripted import Recorded, Reply, ScriptedApp, twiml
from telephony.fake.server import FakeTwilio, build_rest_app
from telephony.fake.simulator import (
    APPLICATION_ERROR,
    CallSimulator,
    Heard,
    Party,
    SimulatedCall,
    SimulatedMessage,
    SimulatorError,
)
from telephony.fake.store import (
    Call,
    Event,
    EventLog,
    FakeTwilioStore,
    Fault,
    FaultPlan,
    Message,
    NumberConfig,
    Queue,
    Recording,
    TwilioApiError,
    new_sid,
)
from telephony.fake.webhooks import ConnectionOverrides, WebhookResult, WebhookSender, sign

__all__ = [
    "APPLICATION_ERROR",
    "Call",
    "CallSimulator",
    "ConnectionOverrides",
    "Event",
    "EventLog",
    "FakeTwilio",
    "FakeTwilioStore",
    "Fault",
    "FaultPlan",
    "Heard",
    "Message",
    "NumberConfig",
    "Party",
    "Queue",
    "Recorded",
    "Recording",
    "Reply",
    "ScriptedApp",
    "SimulatedCall",
    "SimulatedMessage",
    "SimulatorError",
    "TwilioApiError",
    "TwimlDocument",
    "TwimlProblem",
    "WebhookResult",
    "WebhookSender",
    "build_rest_app",
    "new_sid",
    "sign",
    "twiml",
]
