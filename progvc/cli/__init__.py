"""The ``progvc`` command (:mod:`.commands`): its parser (:mod:`.parser`), the checks every verb makes
before it loads a model (:mod:`.checks`) and its exit codes (:mod:`.exit_codes`)."""

from .commands import main
from .exit_codes import (
    EXIT_CODES,
    EXIT_DEVICE,
    EXIT_EXISTS,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_LIMIT,
    EXIT_OK,
    EXIT_STREAM,
    EXIT_USAGE,
    EXIT_WEIGHTS,
)

__all__ = ["EXIT_CODES", "EXIT_DEVICE", "EXIT_EXISTS", "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_LIMIT",
           "EXIT_OK", "EXIT_STREAM", "EXIT_USAGE", "EXIT_WEIGHTS", "main"]
