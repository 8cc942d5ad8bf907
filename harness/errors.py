"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class HarnessError(Exception):
    """A problem the user can fix (bad input, missing data, missing tool); no traceback."""
