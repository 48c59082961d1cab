"""The lab file's `nightly:` block: which suites a lab host runs every night, and when.

    nightly:                             # lab-wide default (optional)
      suites: [suites/quickstart.yaml]   # suite files, relative to the lab file
      at: "02:00"                        # the host's local time, 24-hour HH:MM (quoted: YAML reads 2:30 as 150)
      store: /var/lib/testbed/nightly.sqlite   # optional: result store on the host
      testbed: /opt/testbed/.venv/bin/testbed  # optional: testbed executable on the host
    hosts:
      - name: lab-a
        nightly: {at: "03:30"}           # a host's fields override the lab-wide ones, field by field
      - name: lab-b
        nightly: {suites: []}            # no nightly run on this host (provision removes one)

`testbed provision --tags nightly` copies the suites to the host and installs a systemd timer
(a cron entry where systemd is not PID 1) that runs `testbed nightly SUITE` for each, in turn,
under one lock. Problems are one line each: `lab.yaml:4: hosts[0].nightly.at: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from .yamlload import LineMap, dotted

DEFAULT_AT = "02:00"
AT_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
# Host paths go unquoted into a systemd unit, a crontab line and a shell script: no spaces, quotes, % or $.
HOST_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+-]*$")
SUITE_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _host_path(value: str | None, what: str) -> str | None:
    if value is not None and not HOST_PATH_RE.match(value):
        raise ValueError(f"{value!r}: expected an absolute path on the host ({what}) of letters, digits and ._/+-")
    return value


class NightlySpec(BaseModel):
    """One `nightly:` block as written; unset fields come from the lab-wide block."""

    model_config = ConfigDict(extra="forbid")

    suites: list[str] | None = None
    at: str | None = None
    store: str | None = None
    testbed: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 sexagesimal: 2:30 -> 150
            hours, minutes = divmod(value, 60)
            raise ValueError(f"got the number {value}; write the time in quotes, like \"{hours:02d}:{minutes:02d}\"")
        if isinstance(value, str) and not AT_RE.match(value.strip()):
            raise ValueError(f"{value!r} is not a 24-hour time; expected \"HH:MM\", like \"02:00\"")
        return value.strip() if isinstance(value, str) else value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        return _host_path(value, "the result store")

    @field_validator("testbed")
    @classmethod
    def _testbed(cls, value: str | None) -> str | None:
        return _host_path(value, "the testbed executable")


class NightlySchedule(BaseModel):
    """A host's effective nightly run: suites as absolute files on the controller."""

    model_config = ConfigDict(frozen=True)

    suites: tuple[Path, ...]
    at: str = DEFAULT_AT
    store: str | None = None
    testbed: str | None = None


def resolve_nightly(lab_wide: NightlySpec | None, host: NightlySpec | None, host_index: int, base: Path,
                    source: str, lines: LineMap) -> tuple[NightlySchedule | None, list[str]]:
    """Merge the lab-wide block with a host's, resolve the suites against `base` (the lab file's
    directory) and check that they exist. Returns (schedule or None, error lines)."""
    merged: dict = {}
    origin: dict[str, tuple] = {}  # field -> where it was written, for error lines
    sources: tuple[tuple[NightlySpec | None, tuple], ...] = ((lab_wide, ("nightly",)),
                                                            (host, ("hosts", host_index, "nightly")))
    for spec, loc in sources:
        if spec is not None:
            for name in spec.model_fields_set:
                merged[name], origin[name] = getattr(spec, name), loc
    if not merged:
        return None, []
    if merged.get("suites") is None:
        loc = ("hosts", host_index, "nightly", "suites") if host is not None else ("nightly", "suites")
        return None, [_line(source, lines, loc, "no suites to run; list suite files here or in the lab-wide "
                                                "nightly block (suites: [] turns the nightly run off)")]
    errors: list[str] = []
    suites: list[Path] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(merged["suites"]):
        loc = origin["suites"] + ("suites", i)
        path = Path(entry).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.is_file():
            errors.append(_line(source, lines, loc, f"{entry}: no such suite file ({path}); suite paths are "
                                                    f"relative to the lab file"))
        elif not SUITE_FILE_RE.match(path.name):
            errors.append(_line(source, lines, loc, f"{path.name!r}: a nightly suite's file name may hold only "
                                                    f"letters, digits and ._+-"))
        elif path.name in seen:
            errors.append(_line(source, lines, loc, f"{path.name}: the same file name as suites[{seen[path.name]}]; "
                                                    f"the host keeps suites by file name, so rename one"))
        else:
            seen[path.name] = i
            suites.append(path)
    if errors:
        return None, errors
    if not suites:
        return None, []
    return NightlySchedule(suites=tuple(suites), at=merged.get("at") or DEFAULT_AT, store=merged.get("store"),
                           testbed=merged.get("testbed")), []


def _line(source: str, lines: LineMap, loc: tuple, message: str) -> str:
    line = lines.line_of(loc)
    return f"{source}:{line}: {dotted(loc)}: {message}" if line else f"{source}: {dotted(loc)}: {message}"


def nightly_vars(schedule: NightlySchedule | None) -> dict:
    """The nightly role's variables for one host (playbooks/roles/nightly/defaults/main.yml).
    No schedule: an empty suite list, so the role removes a schedule installed earlier."""
    if schedule is None:
        return {"nightly_suites": []}
    out: dict = {"nightly_suites": [str(p) for p in schedule.suites], "nightly_at": schedule.at}
    if schedule.store:
        out["nightly_store"] = schedule.store
    if schedule.testbed:
        out["nightly_testbed_bin"] = schedule.testbed
    return out


__all__ = ["NightlySchedule", "NightlySpec", "nightly_vars", "resolve_nightly"]
