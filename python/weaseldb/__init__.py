"""WeaselDB Python client (standard library only).

    import weaseldb
    c = weaseldb.Client("http://127.0.0.1:8080")
    v = c.version().version
    c.commit(preconditions=[weaseldb.point_read("n")], read_version=v,
             operations=[weaseldb.write("n", "1")])
    for ev in c.subscribe(after=0):
        ...

See README.md, :mod:`weaseldb.client`, :mod:`weaseldb.admin` and the CLI
(``python3 -m weaseldb --help``).
"""

from .client import (Checkpoint, Client, CommitResult, Event, Operation, Reset, StatusInfo, Transaction,
                     VersionInfo, new_request_id)
from .encoding import b64, delete, point_read, range_delete, range_read, unb64, write
from .errors import (BadRequestError, ConflictError, FutureVersionError, GapError, GoneError, LeaderChangedError,
                     MethodNotAllowedError, NotCommittedError, NotFoundError, OutcomeUnknownError,
                     PayloadTooLargeError, ServerError, TooManyRequestsError, TooOldError, UnauthorizedError, UnavailableError,
                     UnsupportedMediaTypeError, WeaselDBConnectionError, WeaselDBError)

__all__ = [
    "Client", "VersionInfo", "CommitResult", "StatusInfo", "Transaction", "Checkpoint", "Reset", "Operation",
    "Event", "new_request_id", "write", "delete", "range_delete", "point_read", "range_read", "b64", "unb64",
    "WeaselDBError", "WeaselDBConnectionError", "NotCommittedError", "ConflictError", "TooOldError",
    "LeaderChangedError", "BadRequestError", "FutureVersionError", "NotFoundError", "MethodNotAllowedError",
    "GoneError", "PayloadTooLargeError", "UnsupportedMediaTypeError", "TooManyRequestsError", "ServerError",
    "UnavailableError", "UnauthorizedError", "OutcomeUnknownError", "GapError",
]
__version__ = "0.1.0"
