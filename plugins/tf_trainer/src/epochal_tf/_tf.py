"""TensorFlow and Keras, imported quietly: every other module of epochal_tf imports them here.

TensorFlow's C++ start-up lines (oneDNN notices, "could not find cuda drivers", CPU feature
hints) are written by absl before ``TF_CPP_MIN_LOG_LEVEL`` is read, so the variable alone does
not hide them. Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (then they asked for TensorFlow's
own logging and get it unchanged), the import runs with the process' stderr captured; the
known start-up lines are dropped and anything else is written back, so real errors still show.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["keras", "tf"]

#: Lines TensorFlow prints at start-up on a healthy machine; nothing the user can act on.
_NOISE = re.compile(
    r"^(?:[IW]\d{4} .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*"
    r"|E\d{4} .*failed call to cuInit.*)$"
)


def _quietly(action: Callable[[], Any]) -> Any:
    """Run ``action`` with file descriptor 2 captured; write back what is not start-up noise."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured by a tool)
        stderr_fd = 2
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), stderr_fd)
        try:
            result = action()
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if not _NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
    return result


def _import() -> tuple[Any, Any]:
    import keras
    import tensorflow

    # Device discovery prints cuInit failures on machines without a GPU: do it here, once.
    tensorflow.config.list_physical_devices("GPU")
    return tensorflow, keras


#: Set beside TF_CPP_MIN_LOG_LEVEL when epochal (not the user) chose it, so that child
#: processes, which inherit both, are kept quiet too.
_OURS = "_EPOCHAL_TF_QUIET"

if "TF_CPP_MIN_LOG_LEVEL" in os.environ and os.environ.get(_OURS) != "1":
    tf, keras = _import()  # the user chose TensorFlow's verbosity
else:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ[_OURS] = "1"
    tf, keras = _quietly(_import)
    import absl.logging

    # absl's Python warnings (e.g. about compiled metrics when saving) are as unasked for.
    if absl.logging.get_verbosity() == absl.logging.WARNING:
        absl.logging.set_verbosity(absl.logging.ERROR)
