"""The lab's one error type: its message is one line that says what is wrong and what to do."""


class LabError(Exception):
    """A fault labctl reports as ``labctl: <message>`` and exit status 1."""
