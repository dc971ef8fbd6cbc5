"""Call flow: voice prompts and, later, the call webhooks."""
