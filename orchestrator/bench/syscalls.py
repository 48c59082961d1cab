"""syscalls: system-call micro-benchmarks of the gVisor evaluation, measured inside the instance.

The `sysbench` workload (testbed's tbsysbench.c) runs the loops where the platform's system-call
path is; this benchmark is its client: it connects over the lab network from the client side,
sends one request per test and parses the `result name=... ns_per_call=...` lines it answers.

  gettimeofday  the raw system call (syscall(SYS_gettimeofday): the path gVisor's figure is about)
                and libc's gettimeofday() (the vDSO, no kernel entry on Linux), both reported
  getppid       a null system call
  openclose     open(O_RDONLY) + close of one file: on the image's root file system ("rootfs",
                the program's own file), in /tmp ("tmp"; tmpfs in containers) and/or on a host
                tmpfs the platform mounts in ("host-tmpfs": runc and gvisor with host_tmpfs: true)
"""

from __future__ import annotations

import re
import socket
import time
from typing import Literal

from pydantic import Field, field_validator

from ..errors import TestbedError
from .base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target

RESULT = re.compile(r"^result name=(\S+) calls=(\d+) total_ns=(\d+) ns_per_call=([0-9.]+)$")
MAX_CALLS = 100_000_000  # the server's own bound
EXPECTED = {"gettimeofday": ("gettimeofday_syscall", "gettimeofday_vdso"), "getppid": ("getppid_syscall",)}


class SyscallsOptions(BenchmarkOptions):
    tests: list[Literal["gettimeofday", "getppid", "openclose"]] = Field(
        default_factory=lambda: ["gettimeofday", "openclose"], min_length=1)  # type: ignore[arg-type]  # literal list
    calls: int = Field(200_000, ge=1, le=MAX_CALLS, description="loop length of gettimeofday and getppid")
    openclose_calls: int = Field(20_000, ge=1, le=MAX_CALLS, description="loop length of openclose")
    files: list[Literal["rootfs", "tmp", "host-tmpfs"]] = Field(default_factory=lambda: ["rootfs"], min_length=1,  # type: ignore[arg-type]
                                                  description="where openclose's file is")
    timeout: float = Field(120.0, gt=0, description="seconds one request may take")

    @field_validator("tests", "files")
    @classmethod
    def unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("a value is listed twice")
        return values


def parse_results(text: str) -> dict[str, dict[str, float]]:
    """{'gettimeofday_syscall': {'calls': ..., 'total_ns': ..., 'ns_per_call': ...}} from an answer
    that ends with 'end'; an 'error' line or a missing 'end' (a cut answer) raises ValueError."""
    lines = [l.strip() for l in text.strip().splitlines()]
    if not lines or lines[-1] != "end":
        raise ValueError(f"answer cut short (no 'end' line): {text.strip()[-120:]!r}")
    out: dict[str, dict[str, float]] = {}
    for line in lines[:-1]:
        if line.startswith("error"):
            raise ValueError(f"tbsysbench: {line[6:]}")
        m = RESULT.match(line)
        if not m:
            raise ValueError(f"unexpected line from tbsysbench: {line!r}")
        name, calls, total, per = m.groups()
        if int(calls) <= 0:
            raise ValueError(f"{name}: no calls made")
        out[name] = {"calls": int(calls), "total_ns": int(total), "ns_per_call": float(per)}
    return out


def request(sock: socket.socket, line: str, timeout: float) -> str:
    """Send one request line; read until the 'end' line, the connection closes, or the deadline."""
    deadline = time.monotonic() + timeout
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"end\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete answer to {line!r} within {timeout:g} s")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise TimeoutError(f"no complete answer to {line!r} within {timeout:g} s") from None
        if not chunk:
            break
        data += chunk
        if len(data) > 1 << 16:
            raise ValueError("answer too long")
    return data.decode(errors="replace")


class Syscalls(LoadBenchmark, kind="syscalls"):
    Options = SyscallsOptions
    options: SyscallsOptions
    workloads = ("sysbench",)
    tools = ()  # the client is in-process
    metrics = ("ns_per_call",)

    def bound_by_count(self) -> bool:
        return True

    def expected_seconds(self, point: dict) -> float:
        o = self.options  # ~0.1 us per native call, ~20 us under ptrace gVisor
        n = o.openclose_calls * len(o.files) if point["test"] == "openclose" else o.calls
        return max(0.5, n * 5e-6)

    def uses_tcp(self, point: dict) -> bool:
        return False  # one control connection; the measured work is system calls inside the instance

    def sweep(self):
        return {"test": self.options.tests}

    def requests(self, test: str) -> list[tuple[str, tuple[str, ...]]]:
        o = self.options
        if test == "openclose":
            return [(f"openclose {o.openclose_calls} {where}", (f"openclose_{where}",)) for where in o.files]
        return [(f"{test} {o.calls}", EXPECTED[test])]

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        o = self.options
        out: list[Measurement] = []
        try:
            sock = client.connect(target.address, target.port, 5.0)
        except (OSError, TestbedError) as exc:
            return [Measurement.failed("ns_per_call", "ns", f"cannot connect to tbsysbench: {exc}",
                                       {"test": name}) for _, names in self.requests(point["test"]) for name in names]
        broken = None
        with sock:
            for line, names in self.requests(point["test"]):
                if broken:  # the server may still be in the abandoned loop; never read its late answer as ours
                    out += [Measurement.failed("ns_per_call", "ns", f"{line}: not sent after {broken}", {"test": n})
                            for n in names]
                    continue
                try:
                    text = request(sock, line, o.timeout)
                    raw = str(client.keep_output(f"syscalls-{line.split()[0]}", text))
                    parsed = parse_results(text)
                except (OSError, ValueError) as exc:
                    reason = str(exc) if isinstance(exc, TimeoutError) else f"{line}: {exc}"
                    out += [Measurement.failed("ns_per_call", "ns", reason, {"test": n}) for n in names]
                    broken = f"the failure of {line!r}"
                    continue
                for name in names:
                    r = parsed.get(name)
                    if r is None:
                        m = Measurement.failed("ns_per_call", "ns", f"{line}: no {name} result", {"test": name})
                    else:
                        m = Measurement("ns_per_call", r["ns_per_call"], "ns", {"test": name})
                    m.raw = raw
                    out.append(m)
        return out
