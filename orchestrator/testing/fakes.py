"""Fakes for fast tests of the runner and of anything that takes a Host, LabNetwork or Platform."""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import Field

from ..bench.base import BenchmarkOptions, ClientSide, LoadBenchmark, Measurement, Target
from ..enums import NicKind
from ..errors import LaunchError
from ..hosts.base import CommandResult
from ..images.cache import Image, ImageCache
from ..images.recipe import ImageRecipe
from ..net.labnet import Attachment
from ..platforms.base import Instance, Platform, PlatformOptions
from ..timeline import Timeline, now
from ..workloads.base import Connect, Workload, WorkloadOptions, expect, recv_until

# Events every fake appends to, in order, for tests of the runner's step order.
EVENTS: list[tuple[str, str]] = []


def event(kind: str, what: str) -> None:
    EVENTS.append((kind, what))


# --- host ---------------------------------------------------------------------------------------
FAKE_OUTPUT = {
    "nproc": "4\n",
    "uname -r": "6.1.0-fake\n",
    "uname -m": "x86_64\n",
    "uname -n": "fakehost\n",
    "cat /proc/cpuinfo": "model name\t: Fake CPU @ 1GHz\nflags\t\t: fpu vmx\n" * 4,
    "cat /proc/meminfo": "MemTotal:       8000000 kB\n",
    "cat /etc/os-release": 'PRETTY_NAME="Fake OS 1"\n',
}
FAKE_FILES = {
    "/proc/loadavg": "0.50 0.40 0.30 1/100 4242\n",
    "/proc/stat": "cpu  100 0 50 1000 0 0 0 0 0 0\n" + "".join(f"cpu{i} 25 0 12 250 0 0 0 0 0 0\n" for i in range(4)),
}


@dataclass
class FakeProcess:
    pid: int = 4242
    _alive: bool = True

    def alive(self) -> bool:
        return self._alive

    def returncode(self) -> int | None:
        return None if self._alive else 0

    def log_tail(self, lines: int = 3) -> str:
        return "fake process log"

    def stop(self, grace: float = 5.0) -> None:
        self._alive = False


@dataclass
class FakeHost:
    """A host whose commands all succeed with canned output; every call is recorded."""

    name: str = "localhost"
    is_local: bool = True
    lab_address: str | None = None
    home: str = "/nonexistent/testbed-home"
    missing: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)

    def connection_meta(self) -> dict:
        return {} if self.is_local else {"host": self.name, "address": f"{self.name}.invalid"}

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = True, netns: str | None = None,
            input: str | None = None, env: dict[str, str] | None = None,
            abort: Callable[[], str | None] | None = None) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        out = FAKE_OUTPUT.get(" ".join(argv), f"{argv[0]} version 1.0\n")
        return CommandResult(argv, 0, out, "", 0.0)

    def spawn(self, argv: Sequence[str], *, log_path: Path, ledger: Any, label: str,
              before_start: Callable[[], object] | None = None) -> FakeProcess:
        if before_start is not None:
            before_start()
        return FakeProcess()

    def which(self, tool: str) -> str | None:
        return None if tool in self.missing else f"/usr/bin/{tool}"

    def put(self, local: Path, remote: str, *, timeout: float) -> None:
        pass

    def put_tree(self, local: Path, remote: str, *, timeout: float) -> None:
        pass

    def file_sha256(self, path: str, *, timeout: float = 60) -> str | None:
        return "0" * 64

    def read_text(self, path: str, *, timeout: float = 10) -> str:
        return FAKE_FILES.get(path, "")


# --- lab network ----------------------------------------------------------------------------------
class FakeLabNet:
    """Loopback addresses (127.x.y.z, distinct per run) instead of namespaces; nothing is created."""

    def __init__(self, run_id: str = "fake", subnet: str = "", ledger: Any = None):
        base = random.randrange(1, 250)
        self.network = ipaddress.IPv4Network(f"127.{base}.{random.randrange(1, 250)}.0/24")
        self.client_ns = None
        self.live: list[Attachment] = []
        self._next = 10

    def create(self) -> None:
        event("net", "create")

    def destroy(self) -> None:
        for att in list(self.live):
            self.release(att)
        event("net", "destroy")

    def _att(self, nic: NicKind, **kw) -> Attachment:
        self._next += 1
        att = Attachment(self.network.network_address + self._next, self.network, self.network.network_address + 1,
                         "52:54:00:00:00:%02x" % (self._next % 256), nic=nic, **kw)
        self.live.append(att)
        event("attach", str(att.address))
        return att

    def namespace(self, label: str) -> Attachment:
        return self._att(NicKind.VETH)

    def host_interface(self, label: str) -> Attachment:
        return self._att(NicKind.VETH)

    def bridge_port(self) -> Attachment:
        return self._att(NicKind.VIRTIO, bridge="fakebr")

    def tap(self, label: str) -> Attachment:
        return self._att(NicKind.VIRTIO, bridge="fakebr", tap=f"faketap{self._next}")

    def adopt(self, nic: NicKind, mac: str, device: Any = None, release: Callable[[], None] | None = None,
              facts: dict | None = None) -> Attachment:
        att = self._att(nic, device=device, facts=dict(facts or {}))
        if release:
            att.on_release.append(release)
        return att

    def release(self, att: Attachment) -> None:
        if att in self.live:
            self.live.remove(att)
            for fn in att.on_release:
                fn()
            event("release", str(att.address))


# --- workload -------------------------------------------------------------------------------------
class FakeEchoOptions(WorkloadOptions):
    greeting: str = "pong"


class FakeEcho(Workload, kind="fake-echo"):
    """Answers `ping` with its greeting; the fake platform serves it on loopback."""

    port = 47123
    Options = FakeEchoOptions
    options: FakeEchoOptions
    recipe = ImageRecipe(packages=(), binaries=())

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        pass

    def server_argv(self, config_path: str) -> list[str]:
        return ["fake-echo"]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(b"ping\n")
            got = recv_until(s, b"\n")
            return expect(got == f"{self.options.greeting}\n".encode(), "ping", got)


# --- platform -------------------------------------------------------------------------------------
class FakePlatformOptions(PlatformOptions):
    ready_after_polls: int = Field(0, ge=0, description="liveness checks before the server listens")
    fail_launch: str | None = None  # launch raises LaunchError with this reason
    not_runnable_reason: str | None = None
    die_after_s: float | None = None  # the instance dies this long after launch
    ready_timeout: float = Field(5.0, gt=0)


class FakeInstance(Instance):
    def __init__(self, name: str, attachment: Attachment, timeline: Timeline, workdir: Path,
                 options: FakePlatformOptions, greeting: str):
        super().__init__(name, attachment, timeline, workdir)
        self.options = options
        self.greeting = greeting
        self.polls = 0
        self.started = now()
        self.dead = False
        self.stopped = False
        self.server: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.address, FakeEcho.port))
        s.listen(16)
        self.server = s
        self.thread = threading.Thread(target=self._serve, args=(s,), daemon=True)
        self.thread.start()

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    if recv_until(conn, b"\n") == b"ping\n":
                        conn.sendall(f"{self.greeting}\n".encode())
                except OSError:
                    pass

    def alive(self) -> bool:
        if self.stopped or self.dead:
            return False
        if self.options.die_after_s is not None and now() - self.started > self.options.die_after_s:
            self.dead = True
            self._close()
            return False
        self.polls += 1
        if self.server is None and self.polls > self.options.ready_after_polls:
            self._listen()
        return True

    def exit_reason(self) -> str:
        return "fake instance died on purpose" if self.dead else "fake instance stopped"

    def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def stop(self, *, fast: bool = False) -> None:
        if not self.stopped:
            self.stopped = True
            self._close()
            event("stop", self.name)


class FakePlatform(Platform[FakePlatformOptions], kind="fake"):
    Options = FakePlatformOptions

    def attach(self, net):
        event("platform-attach", self.name)
        return net.namespace(self.name)

    def image(self, workload: Workload, cache: ImageCache) -> Image:
        return Image("fake", workload.kind, "r" * 64, "d" * 64, Path("/nonexistent"), {}, True)

    def not_runnable(self, workload: Workload) -> str | None:
        return self.options.not_runnable_reason

    def launch(self, image: Image, workload: Workload, attachment: Attachment, timeline: Timeline) -> Instance:
        event("launch", self.name)
        timeline.mark("requested")
        if self.options.fail_launch:
            raise LaunchError(self.options.fail_launch)
        timeline.mark("process_started")
        greeting = getattr(workload.options, "greeting", "pong")
        return FakeInstance(f"fake-{self.name}-{attachment.address}", attachment, timeline, self.workdir,
                            self.options, greeting)


# --- benchmark ------------------------------------------------------------------------------------
class FakeLoadOptions(BenchmarkOptions):
    values: list[float] = Field(default_factory=lambda: [100.0])  # cycled through, one per run
    points: list[int] = Field(default_factory=lambda: [1])  # a sweep over `size`
    fail_every: int = Field(0, ge=0, description="every N-th run fails (0: never)")
    interrupt_after: int = Field(0, ge=0, description="raise KeyboardInterrupt on the N-th run (0: never)")
    bug_after: int = Field(0, ge=0, description="raise a TypeError (a bug) on the N-th run")
    seconds: float = Field(0.0, ge=0, le=10, description="how long one run takes (watching the instance)")
    warmup: int = Field(0, ge=0)


class FakeLoad(LoadBenchmark, kind="fake-load"):
    Options = FakeLoadOptions
    options: FakeLoadOptions
    workloads = ("fake-echo",)

    def __init__(self, name: str, options: BenchmarkOptions):
        super().__init__(name, options)
        self.runs = 0

    def sweep(self) -> dict[str, list]:
        return {"size": list(self.options.points)}

    def run(self, point: dict, target: Target, client: ClientSide) -> list[Measurement]:
        o = self.options
        self.runs += 1
        event("bench", f"{self.name} {point}")
        if o.interrupt_after and self.runs == o.interrupt_after:
            raise KeyboardInterrupt("SIGINT")
        if o.bug_after and self.runs == o.bug_after:
            raise TypeError("a bug in a benchmark")
        deadline = now() + o.seconds
        while now() < deadline:
            if client.watch is not None and (reason := client.watch()):
                return [Measurement.failed("value", "req/s", f"stopped: {reason}", point)]
            threading.Event().wait(0.01)
        if o.fail_every and self.runs % o.fail_every == 0:
            return [Measurement.failed("value", "req/s", "fake tool failed", point)]
        value = o.values[(self.runs - 1) % len(o.values)]
        return [Measurement("value", value, "req/s", {**point, "duration_s": o.seconds})]

