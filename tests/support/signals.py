"""Child processes whose Ctrl-C handling a test checks."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` giving the child SIGINT's default disposition, as a user's terminal does.

    A test run started in the background of a non-interactive shell (``make test &``) inherits SIGINT
    ignored, and Python then keeps ignoring it: the child would never see the Ctrl-C the test sends.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
