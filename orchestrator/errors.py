"""Exceptions raised inside testbed; the CLI turns each into one line and an exit code."""


class TestbedError(Exception):
    """Base of every error testbed raises on purpose. str(e) is the one line shown to the user."""

    exit_code = 1


class ConfigError(TestbedError):
    """A suite, lab or image file is wrong: the message names file, line, field and the fix."""

    exit_code = 2


class DataError(ConfigError):
    """The result store, or what was asked of it, is wrong: corrupted file, no history of a suite, unknown host."""


class MissingToolError(TestbedError):
    """A runtime or tool the requested work needs is not installed."""

    exit_code = 3


class ResourceBusyError(TestbedError):
    """An address, port, namespace or device testbed wants is already taken."""

    exit_code = 4


class LaunchError(TestbedError):
    """A platform could not start an instance (runtime failed, guest crashed)."""


class NotReadyError(LaunchError):
    """An instance started but its workload never answered the readiness probe in time."""


class HostError(TestbedError):
    """A lab host cannot be reached, refused testbed, or dropped the connection mid-run. Inside a run
    it fails the cell at hand (the run goes on with the next); what was left on the host stays in
    the ledger for `testbed gc`."""


class TransferError(LaunchError):
    """A file or image copied to a lab host does not have the content it was sent with."""


class BenchmarkError(TestbedError):
    """A load generator failed; the runner stores this as a failed sample with the reason."""


class CommandTimeout(TestbedError):
    """An external command exceeded its timeout."""


class Interrupted(TestbedError):
    """SIGINT or SIGTERM arrived; the run tears down and keeps the samples measured so far."""

    exit_code = 130


class NotRunnableError(TestbedError):
    """A cell cannot run here, for a reason that is no fault of the run (no SR-IOV NIC, no guest driver
    for the VF, no KVM, an image missing); the cell is reported not runnable with the reason and the
    run goes on."""

    exit_code = 3
