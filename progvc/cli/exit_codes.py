"""How the ``progvc`` command fails: one line on stderr and a distinct exit code per kind of failure."""

from __future__ import annotations

import os
import sys
import traceback

from ..runtime.errors import BitstreamError, ConfigError, DeviceError, LimitError, ProgvcError, VideoError, WeightsError
from ..stream.truncation import BelowSmallestStream

(EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_STREAM, EXIT_WEIGHTS, EXIT_EXISTS, EXIT_DEVICE,
 EXIT_LIMIT) = range(9)
EXIT_INTERRUPTED = 130
MEANING = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug: set PROGVC_DEBUG=1 for a traceback and report it)",
    EXIT_USAGE: "bad command line or option value",
    EXIT_INPUT: "input or output file error: missing, unreadable or unwritable file, not a video",
    EXIT_STREAM: "corrupt, cut short or foreign stream (made by other weights)",
    EXIT_WEIGHTS: "model weights missing, damaged or not matching their config",
    EXIT_EXISTS: "the output exists (pass -f to overwrite)",
    EXIT_DEVICE: "the requested device is not available",
    EXIT_LIMIT: "the job exceeds a resource limit (raise it with --max-frame-pixels, --max-pixels, --max-memory)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); no partial output is left behind",
}
EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in MEANING.items())

_ERROR_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ConfigError, EXIT_USAGE), (VideoError, EXIT_INPUT), (BitstreamError, EXIT_STREAM),
    (WeightsError, EXIT_WEIGHTS), (DeviceError, EXIT_DEVICE), (LimitError, EXIT_LIMIT), (ProgvcError, EXIT_INTERNAL),
    (OSError, EXIT_INPUT),
)


class CliError(Exception):
    """A failure found by the command line itself, with its exit code and a one-line message that
    names the flag the user typed and what to do."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def report(exc: BaseException) -> int:
    """Print ``exc`` as one ``progvc: error:`` line and return its exit code."""
    if isinstance(exc, CliError):
        return fail(exc.code, str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return fail(EXIT_INTERRUPTED, "interrupted")
    if isinstance(exc, BelowSmallestStream):  # encode --bpp and truncate --bpp: name the flag
        return fail(EXIT_USAGE, exc.phrased("--bpp "))
    code = next((c for kind, c in _ERROR_CODES if isinstance(exc, kind)), EXIT_INTERNAL)
    if isinstance(exc, OSError) and exc.filename is not None:
        return fail(code, f"{exc.strerror or exc}: {exc.filename}")
    if code == EXIT_INTERNAL and not isinstance(exc, ProgvcError):
        if os.environ.get("PROGVC_DEBUG"):
            traceback.print_exc()
        return fail(code, f"internal error ({type(exc).__name__}: {exc}); please report it, "
                          "with the traceback that PROGVC_DEBUG=1 prints")
    return fail(code, str(exc))


def fail(code: int, message: str) -> int:
    print(f"progvc: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    """A one-line warning on stderr: the run goes on."""
    print(f"progvc: warning: {' '.join(message.split())}", file=sys.stderr)
