"""Fake loguru: ``logger`` writing loguru's default line format to stderr, as tt-metal's demos log."""

import datetime
import inspect
import sys


class _Logger:
    def _write(self, level, message):
        frame = inspect.stack()[2]
        module = frame.frame.f_globals.get("__name__", "?")
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        sys.stderr.write(f"{now} | {level:<8} | {module}:{frame.function}:{frame.lineno} - {message}\n")
        sys.stderr.flush()

    def debug(self, message, *args, **kwargs):
        self._write("DEBUG", message)

    def info(self, message, *args, **kwargs):
        self._write("INFO", message)

    def warning(self, message, *args, **kwargs):
        self._write("WARNING", message)

    def error(self, message, *args, **kwargs):
        self._write("ERROR", message)


logger = _Logger()
