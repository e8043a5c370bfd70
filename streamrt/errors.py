"""Every exception streamrt raises, in one place.

Hierarchy::

    StreamrtError                      base of everything below; has a wire ``code``
    ├── ConfigError                    a setting, policy name or option is wrong
    │   ├── UnknownPolicyError         no policy registered under that name
    │   └── PolicyOptionError          unknown option, or a value of the wrong type/range
    ├── InputError                     a client sent something wrong (session keeps what it committed)
    │   ├── ProtocolError              not JSON, unknown message type, wrong order
    │   ├── AudioFormatError           unsupported encoding/rate/channels, odd byte count
    │   └── LimitExceeded              a named limit was passed; carries the numbers
    ├── ModelLoadError                 a model file or folder cannot be read as what it claims
    ├── LogFormatError                 a SimulEval instances.log line is malformed (names the line)
    ├── DataError                      a data TSV row or audio file is unusable (names the row)
    ├── ModelStepError                 a model step raised for one session's stream (that session ends)
    └── SessionClosed                  input arrived after the session ended

The feed path (``Session.receive_*``) never lets these escape to a transport: it turns them into an
``ErrorEvent`` with ``code`` and ``message`` (see ``streamrt.types``). Fatal errors close the session;
the rest are reported and the session goes on.
"""

from __future__ import annotations


class StreamrtError(Exception):
    """Base class. ``code`` is the stable identifier sent to clients in ``error`` messages."""

    code = "internal_error"
    fatal = True

    def __init__(self, message: str, *, code: str | None = None, fatal: bool | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if fatal is not None:
            self.fatal = fatal


class ConfigError(StreamrtError):
    code = "bad_config"


class UnknownPolicyError(ConfigError):
    code = "unknown_policy"

    def __init__(self, name: str, known: list[str] | tuple[str, ...]):
        super().__init__(f"unknown policy {name!r}; installed policies: {', '.join(sorted(known))}")
        self.name = name
        self.known = tuple(known)


class PolicyOptionError(ConfigError):
    code = "bad_policy_option"


class InputError(StreamrtError):
    code = "bad_input"
    fatal = False


class ProtocolError(InputError):
    code = "protocol_error"


class AudioFormatError(InputError):
    code = "bad_audio_format"


class LimitExceeded(InputError):
    """A named limit was passed. The message says which, the limit, the value seen, and the unit."""

    code = "limit_exceeded"

    def __init__(
        self,
        setting: str,
        limit: float,
        value: float,
        unit: str,
        *,
        what: str | None = None,
        code: str | None = None,
        fatal: bool | None = None,
    ):
        what = what or setting.replace("_", " ")
        super().__init__(
            f"{what}: {_exact(value)} {unit} is over the limit of {_exact(limit)} {unit} (setting {setting})",
            code=code,
            fatal=fatal,
        )
        self.setting = setting
        self.limit = limit
        self.value = value
        self.unit = unit


def _exact(x: float) -> str:
    """A number as a person reads it: integers whole (1048576, not 1.04858e+06), other values to 10
    significant digits, so that a value over its limit never prints equal to it."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:.10g}"


class ModelLoadError(StreamrtError):
    code = "model_load_error"


class LogFormatError(StreamrtError):
    """A line of an instances.log is unusable; ``line`` is 1-based."""

    code = "bad_log"

    def __init__(self, path: str, line: int, problem: str):
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class DataError(StreamrtError):
    """A data file row (or the audio it names) is unusable; ``row`` is 1-based, header = row 1."""

    code = "bad_data"

    def __init__(self, path: str, row: int | None, problem: str):
        where = f"{path}:{row}" if row is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.row = row
        self.problem = problem


class SessionClosed(InputError):
    code = "session_closed"


class ModelStepError(StreamrtError):
    """A model step raised for one session's stream; the scheduler ends that session only."""

    code = "model_error"
