"""The web dashboard, served by the daemon in its own event loop."""
