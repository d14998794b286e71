"""Error taxonomy: who can fix the problem decides how it is reported.

* :class:`UserError` -- bad hyperparameters, bad data, a missing channel. The user can fix it: the message
  (no traceback) goes to ``output/failure`` and the log. SageMaker shows it as the job's FailureReason.
* :class:`AlgorithmError` -- a bug or an unexpected state in this code. Reported with the traceback.
* :class:`PlatformError` -- the environment is not what SageMaker promises (unreadable config, no disk).

Library code raises these; only the entry points (``object2vec.training.main``, the server) catch them.
"""


class Object2VecError(Exception):
    """Base class of every error this package raises on purpose."""


class UserError(Object2VecError):
    """The user can fix this: bad hyperparameters, malformed data, a missing channel or file.

    ``status`` is the HTTP status the server answers it with: 400 (a bad request), unless a subclass
    says otherwise (406, 408, 413, 415: :mod:`object2vec.serving.codec`).
    """

    status = 400


class AlgorithmError(Object2VecError):
    """An internal fault of the algorithm (a bug): reported with its traceback."""


class PlatformError(Object2VecError):
    """The SageMaker environment is not as documented (config files, directories, devices)."""
