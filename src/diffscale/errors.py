"""The error every engine shows a person: a study that cannot run, naming the key and what is allowed."""


class ParamsError(ValueError):
    """A study file that cannot run; the message names the key and what is allowed."""
