"""Durable background jobs: REST calls to Twilio, offer timeouts, checkpoints, clean-up."""
