"""Errors that name the fix. Every bad input the course can meet raises one of these.

Every error class of the package is defined here (a module re-exports the ones it raises), together with
``check_texts``, the one boundary check for "a list of texts" that every module taking texts can call.
(Three still live in their modules — attention, icl, chat — until those move: tests/test_course_wing.py.)
"""

from __future__ import annotations

from collections.abc import Sequence


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


class TemplateError(CourseError):
    """A template pattern or an example that does not fit it (missing, repeated or unknown placeholder)."""


class TokenizerMismatchError(CourseError):
    """A tokenizer that does not belong to the model it is paired with (another model family's vocabulary)."""


class AttentionShapeError(CourseError):
    """Tensors whose shapes cannot go into attention together (the message says which dims disagree)."""


class DemonstrationLeakError(CourseError):
    """A test example that also appears among its own demonstrations (its label would leak)."""


class ChatTemplateError(CourseError):
    """A tokenizer without a chat template, a base model given one, or a template the scorer cannot split."""


class ParameterError(CourseError):
    """A notebook parameter that cannot be used: a bad name, an unreadable value, or not the declared type."""


class NotebookNotFoundError(CourseError, FileNotFoundError):
    """No course notebook matches the number or name that was asked for."""


class NotebookFailedError(CourseError, RuntimeError):
    """A cell of a notebook raised an error while papermill executed it."""

    def __init__(
        self, message: str, notebook, output=None, cell_index: int | None = None, ename: str = "", evalue: str = ""
    ):
        super().__init__(message)
        self.notebook, self.output = notebook, output  # output: the failed executed copy (None: nothing ran)
        self.cell_index, self.ename, self.evalue = cell_index, ename, evalue


class SiteError(CourseError):
    """The site cannot be built from what is on disk (no executed notebooks, unreadable files)."""


class StudentCopyError(CourseError):
    """The source or destination folder cannot be used for a student copy."""


def check_texts(texts, what: str = "texts", allow_empty: bool = True) -> list[str]:
    """``texts`` as a list of strings, or a clear error naming ``what``, the position and the fix.

    The boundary check of every entry point that takes texts: a single string (which would be read as a
    list of characters) is a ``TypeError``; ``None`` or a non-string item is a ``TypeError`` naming its
    index (instead of an ``AttributeError`` from ``.strip()`` deep inside a tokenizer); with
    ``allow_empty=False`` an empty or whitespace-only item is an ``EmptyTextError``.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, not one string: write [{texts!r}].")
    if texts is None or not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise TypeError(f"{what} must be a list of strings, got {type(texts).__name__}.")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            missing = t is None or (isinstance(t, float) and t != t)  # None, or NaN (pandas' empty cell)
            hint = " (a missing value: drop the row or fill it in)" if missing else ""
            raise TypeError(f"{what}[{i}] is {t!r} ({type(t).__name__}), not a string{hint}.")
        if not allow_empty and not t.strip():
            raise EmptyTextError(f"{what}[{i}] is empty: every text needs at least one token.")
    return out
