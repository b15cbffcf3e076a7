"""The one exception type for mistakes a user can fix (a bad option, a file that does not fit, an output
directory that holds another run): the CLI prints ``taosr1 <cmd>: error: <message>`` and exits 2."""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input or options; the message says what and where, without a traceback."""
