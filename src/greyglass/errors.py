"""The one error type a user can cause.

Every mistake a user can make (a missing file, an unknown site, a malformed dataset row, a
d_model mismatch) raises :class:`GreyglassError` with a message that says what was wrong,
where, and what to do. The CLI prints it on one line and exits with status 2.
"""


class GreyglassError(Exception):
    """A problem with the user's input or environment, explained in the message."""
