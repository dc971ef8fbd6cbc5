"""The live app and fake Twilio of the voice tests, for reports by voice and by text."""

from tests.calls.conftest import fake, live_app, live_overrides

__all__ = ["fake", "live_app", "live_overrides"]
