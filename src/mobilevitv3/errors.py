"""The one exception type for bad user input that the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user (path, file, shape, option): the message is shown as is, without a traceback."""
