"""The one exception type for user mistakes: its message is the line the user sees."""

_LINE_BREAKS = {c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
_TABLE = str.maketrans({**_LINE_BREAKS, "\x00": "\\x00"})
MAX_MESSAGE = 2000


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as a single printable line: line breaks and NUL escaped, cut to ``limit`` characters."""
    text = str(text).translate(_TABLE)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FramereelError(Exception):
    """A problem the user can fix. ``str(err)`` is one line naming the cause and the fix.

    The CLI prints it without a traceback and exits with ``exit_code`` (2: bad input). Whatever
    a message quotes (a prompt, a key, a path), it stays one line.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(one_line(message))
        self.exit_code = exit_code
