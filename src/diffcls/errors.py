"""The one exception type users see.

Library code raises :class:`DiffclsError` for anything caused by bad input (paths, data, names, options). The CLI
prints its message on one line and exits with status 2, so a user never sees a traceback for a mistake of theirs.
"""


class DiffclsError(Exception):
    """A user-facing error: bad input, missing file, unknown name. Its message is printed as-is by the CLI."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of a library's exception message (libraries append paragraphs of advice), or the
    exception's type name when it has no message: what a one-line :class:`DiffclsError` quotes."""
    lines = str(e).strip().splitlines()
    return lines[0].strip() if lines else type(e).__name__
