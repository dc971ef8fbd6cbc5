"""The web console (`/console`): server-rendered pages; actions go through the same JSON API."""
