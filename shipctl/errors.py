"""One error hierarchy; the CLI catches ShipctlError once and exits with its code."""

from __future__ import annotations

# Exit codes that are not an exception's (a run that went on but met bad input, or could not deliver). The
# exceptions' own codes are on their classes below.
EXIT_USAGE = 64  # EX_USAGE
EXIT_SOURCE_ERRORS = 65  # EX_DATAERR: a log, monitor or queued batch could not be read
EXIT_UPLOAD_FAILED = 69  # EX_UNAVAILABLE: a sink refused or could not be reached


class ShipctlError(Exception):
    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(ShipctlError):
    """A config file is missing, malformed or has a bad value (EX_CONFIG)."""

    exit_code = 78


class MonitorSetupError(ShipctlError):
    """A monitor's own files (plugin descriptor, module) are missing or broken: that monitor fails (exit 65
    when it was to run), the rest of the run goes on; ``check-config`` reports it as a config error."""

    exit_code = 65


class LockHeld(ShipctlError):
    """Another run of the same command kind holds the lock (EX_TEMPFAIL)."""

    exit_code = 75


class StateError(ShipctlError):
    """The state file cannot be opened or is from a newer shipctl (EX_CANTCREAT-ish)."""

    exit_code = 73


class SinkError(ShipctlError):
    """Upload could not deliver; batches stay queued (EX_UNAVAILABLE)."""

    exit_code = 69


class UsageError(ShipctlError):
    exit_code = 64


class Unavailable(ShipctlError):
    """A system service a command needs is missing, e.g. systemd for ``timers install`` (EX_UNAVAILABLE)."""

    exit_code = 69


class NoSuchUser(ShipctlError):
    """A user named on the command line does not exist (EX_NOUSER)."""

    exit_code = 67


class CannotWrite(ShipctlError):
    """An output file (a unit, a crontab) cannot be written (EX_CANTCREAT)."""

    exit_code = 73
