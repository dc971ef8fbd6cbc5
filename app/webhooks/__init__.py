"""Twilio webhook plumbing shared by the call and messaging routers (signature check, typed events)."""
