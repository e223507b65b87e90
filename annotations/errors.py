"""Errors that domain functions raise for input a person can correct."""


class InputError(ValueError):
    """Input a person can correct; the message says how. The API answers 400 with it."""
