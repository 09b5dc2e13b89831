"""The one exception type a user ever sees: a one-line message that names the problem and the fix."""


class RdistError(Exception):
    """Bad input or an unusable environment. The CLI prints the message on one line and exits 1."""


class AdversarialBoundsError(RuntimeError):
    """An adversarial example left the eps-ball or [0, 1]: a bug in an attack, never a user error."""
