"""Errors that name the fix. Every bad input the course can meet raises one of these."""


class CourseError(ValueError):
    """Base class: a bad input or a missing resource, with a message saying what to do."""


class UnknownTaskError(CourseError, KeyError):
    """A task or split name that the course does not know."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0])


class DataFileMissingError(CourseError, FileNotFoundError):
    """A data file that should ship with the course is not where we looked."""


class DataFormatError(CourseError):
    """A data file whose content is not what the course expects (names the file, the line and what was expected)."""


class ModelNotFoundError(CourseError, OSError):
    """No weights could be found for a model name (offline, and no random fallback allowed)."""


class ContextWindowError(CourseError):
    """An input longer than the model's context window."""


class EmptyTextError(CourseError):
    """Empty (or whitespace-only) text where the course needs at least one token."""


class LabelWordError(CourseError):
    """A label word that does not tokenize the way the method needs (empty, several tokens, collision)."""


class PromptError(CourseError):
    """A bad prompt setting (n ≤ 0, unknown init or optimiser, …), for every prompt method."""


class PromptShapeError(PromptError):
    """A prompt whose shape does not fit the model (wrong hidden size, wrong geometry, wrong n)."""


class BaseModelMismatchError(PromptError):
    """A saved prompt loaded onto a different base model or tokenizer than it was trained with."""


class CheckpointError(CourseError):
    """A saved prompt folder that is missing, incomplete, corrupt or of another format version."""


class TrainConfigError(CourseError):
    """A bad training setting (unknown method or task, a batch that does not split over the processes …)."""
