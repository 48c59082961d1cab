"""oci: any OCI runtime named in the suite, run like runc (`platforms: {crun: {kind: oci, runtime: crun}}`).

The runtime must take runc's command line (`--root DIR run --bundle B ID`, `kill ID KILL`, `delete
--force ID`), as crun, youki, uKontainer's runu and kata-runtime do; testbed gives it the same
bundle, namespace and CPU placement as runc. See docs/extending.md for bringing runu or Kata.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..tools import Tool
from .base import PlatformOptions
from .oci_runtime import OciPlatform

# Debian packages of the runtimes known to work this way (others: say where they come from in the docs).
PACKAGES = {"crun": "crun", "runc": "runc", "youki": "youki", "kata-runtime": "kata-containers (not in Debian 12)"}


class OciOptions(PlatformOptions):
    runtime: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                         description="the runtime's executable on the host's PATH, e.g. crun")
    runtime_args: list[str] = Field(default_factory=list, description="global flags before the command")

    @field_validator("runtime_args")
    @classmethod
    def _flags(cls, values: list[str]) -> list[str]:
        for v in values:
            if not v.startswith("-") or v.split("=", 1)[0] in ("--root", "-root"):
                raise ValueError(f"{v!r}: runtime_args are global flags (starting with -), and --root is testbed's")
        return values


class Oci(OciPlatform[OciOptions], kind="oci"):
    Options = OciOptions

    @property
    def runtime(self) -> str:
        return self.options.runtime

    @property
    # per runtime, so two runtimes never share state
    def state_root(self) -> str:  # type: ignore[override]
        return f"/run/testbed-oci-{self.options.runtime}"

    def global_flags(self) -> list[str]:
        return ["--root", self.state_root, *self.options.runtime_args]

    @classmethod
    def tools_for(cls, options: PlatformOptions) -> tuple[Tool, ...]:
        runtime = options.runtime  # type: ignore[attr-defined]
        return (Tool(runtime, PACKAGES.get(runtime, f"{runtime} (see docs/extending.md)"), (runtime, "--version"),
                     f"oci platform ({runtime})"),)

    def provenance(self) -> dict:
        return {"oci_runtime": self.options.runtime, "oci_runtime_args": self.options.runtime_args}
