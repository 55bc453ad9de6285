"""Piper text-to-speech as a service: one core shared by the Lambda handlers and the local server."""

__version__ = "0.1.0"
