"""The one exception type for user mistakes: its message is the line the user sees."""


class FramereelError(Exception):
    """A problem the user can fix. ``str(err)`` is one line naming the cause and the fix.

    The CLI prints it without a traceback and exits with ``exit_code`` (2: bad input).
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
