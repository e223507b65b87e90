"""Errors that domain functions raise for input a person can correct."""


class InputError(ValueError):
    """Input a person can correct; the message says how. The API answers 400 with it."""


class AudioUnavailable(LookupError):
    """A recording's audio is not on the server (moved, unmounted, or imported without its
    audio); its windows and labels remain. The API answers 404 with the message."""
