"""Errors that name the fix. Every bad input the course can meet raises one of these."""


class CourseError(ValueError):
    """Base class: a bad input or a missing resource, with a message saying what to do."""


class UnknownTaskError(CourseError, KeyError):
    """A task or split name that the course does not know."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0])


class DataFileMissingError(CourseError, FileNotFoundError):
    """A data file that should ship with the course is not where we looked."""


class ModelNotFoundError(CourseError, OSError):
    """No weights could be found for a model name (offline, and no random fallback allowed)."""


class ContextWindowError(CourseError):
    """An input longer than the model's context window."""


class EmptyTextError(CourseError):
    """Empty (or whitespace-only) text where the course needs at least one token."""


class LabelWordError(CourseError):
    """A label word that does not tokenize the way the method needs (empty, several tokens, collision)."""
