"""The one exception type that carries a message meant for the user."""


class GanvasError(Exception):
    """A problem with the user's input or environment, described in one line.

    The CLI prints the message (prefixed with ``ganvas: error:``) and exits with
    status 2 instead of showing a traceback. The message should name the file or
    option at fault and say what to do about it.
    """
