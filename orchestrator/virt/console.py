"""Reading a guest's serial console: printk timestamps and testbed's init markers.

The console file (libvirt `<serial type='file'>`) holds firmware noise (escape sequences),
kernel lines `[    1.234567] message` and lines printed by guests/init.sh.j2:
`TESTBED <event> uptime=<guest seconds> [key=value ...]`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import HostError

log = logging.getLogger(__name__)

PRINTK = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
MARKER = re.compile(r"TESTBED ([\w-]+)((?:\s+\S+=\S*)*)\s*$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")
RUN_INIT = re.compile(r"Run (\S+) as init process")

# init marker -> Timeline phase it stands for
MARKER_PHASES = {"guest-start": "kernel_up", "probe-start": "kernel_up", "workload-start": "init_started"}


@dataclass
class Event:
    kind: str  # line | printk | marker
    text: str
    name: str | None = None  # marker name
    values: dict[str, str] = field(default_factory=dict)
    kernel_time: float | None = None  # printk seconds


@dataclass
class ConsoleParser:
    """Incremental: feed() bytes as they arrive; complete lines become events."""

    buffer: bytes = b""
    lines: int = 0
    nbytes: int = 0
    markers: dict[str, dict[str, str]] = field(default_factory=dict)
    first_printk: float | None = None
    last_printk: float | None = None
    run_init_at: float | None = None  # printk time of "Run /init as init process"
    tail: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Event]:
        self.nbytes += len(data)
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        return [e for raw in complete if (e := self._line(raw)) is not None]

    def _line(self, raw: bytes) -> Event | None:
        text = ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "").strip()
        if not text:
            return None
        self.lines += 1
        self.tail = (self.tail + [text])[-20:]
        m = PRINTK.match(text)
        if m:
            t = float(m.group(1))
            self.first_printk = t if self.first_printk is None else self.first_printk
            self.last_printk = t
            if self.run_init_at is None and RUN_INIT.search(m.group(2)):
                self.run_init_at = t
            return Event("printk", m.group(2), kernel_time=t)
        m = MARKER.search(text)
        if m:
            values = dict(kv.split("=", 1) for kv in m.group(2).split())
            self.markers.setdefault(m.group(1), values)
            return Event("marker", text, name=m.group(1), values=values)
        return Event("line", text)

    def uptime(self, marker: str) -> float | None:
        try:
            return float(self.markers[marker]["uptime"])
        except (KeyError, ValueError):
            return None

    def guest_figures(self) -> dict[str, float | None]:
        """The guest's own view, in ms: kernel printk clock and /proc/uptime at init markers."""
        init = self.uptime("guest-start") or self.uptime("probe-start")
        work = self.uptime("workload-start")
        net = self.uptime("net-up")
        ms = lambda s: None if s is None else round(s * 1000.0, 3)  # noqa: E731
        return {
            "kernel_to_init": ms(init),  # guest uptime when /init ran its first line
            "kernel_run_init": ms(self.run_init_at),  # printk time of "Run /init as init process"
            "init_to_net": ms(net - init) if net is not None and init is not None else None,
            "init_to_workload": ms(work - init) if work is not None and init is not None else None,
            "kernel_to_workload": ms(work),
        }

    def tail_line(self, lines: int = 3) -> str:
        return " | ".join(self.tail[-lines:]) or "(console empty)"


class ConsoleFile:
    """Follows a console file from where it was last read (kept open between reads)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.parser = ConsoleParser()
        self._fh: BinaryIO | None = None

    def start(self) -> None:
        """Nothing to do before the guest exists: the file is read from its start when it appears."""

    def poll(self) -> list[Event]:
        if self._fh is None:
            try:
                self._fh = open(self.path, "rb")
            except FileNotFoundError:
                return []
            self._fh.seek(self.offset)
        data = self._fh.read()
        if not data:
            return []
        self.offset += len(data)
        return self.parser.feed(data)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RemoteConsole:
    """A console file on a lab host, followed over one SSH channel: `tail -F` there streams what the
    guest writes, and poll() hands on whatever has arrived, so phases are stamped when the lines
    reach this machine (later than they were written there by the SSH latency: docs/lab-hosts.md).
    The far side ends when the channel's input closes (close(), or testbed's connection dying)."""

    # -F: from before the file exists (follow it as soon as libvirt makes it); -s: where tail has to
    # poll rather than use inotify, every 10 ms, not its default second.
    FOLLOW = 'tail -c +1 -s 0.01 -F -- "$1" 2>/dev/null & t=$!; cat > /dev/null; kill "$t"'

    def __init__(self, host, path: str):
        self.host = host
        self.path = path
        self.parser = ConsoleParser()
        self.error: str | None = None  # why the console cannot be followed (the host stopped answering)
        self._chan = None
        self._closed = False

    def start(self) -> None:
        """Follow the file from now on (before the guest is created, so no line waits for the channel)."""
        self.poll()

    def poll(self) -> list[Event]:
        if self._closed or self.error:
            return []
        try:
            chan = self._chan
            if chan is None:
                chan = self._chan = self.host.exec_channel(["sh", "-c", self.FOLLOW, "sh", self.path], timeout=30)
            data = b""
            while chan.recv_ready():
                data += chan.recv(1 << 16)
        except (HostError, OSError, EOFError) as exc:
            self.error = str(exc) or type(exc).__name__
            return []
        if not data:
            return []
        return self.parser.feed(data)

    def close(self) -> None:
        self._closed = True
        if self._chan is not None:
            try:
                self._chan.shutdown_write()
            except (OSError, EOFError):
                pass
            self._chan.close()
            self._chan = None


# (new events, the monotonic time they were read) -> None; called on the watcher's thread.
OnEvents = Callable[[list[Event], float], None]
WATCH_INTERVAL = 0.002  # seconds between reads: the resolution of console phases


class ConsoleWatcher:
    """Reads a console continuously on its own thread and hands each batch of complete lines to
    `on_events` with the time it was read, so console phases are stamped as lines arrive, not
    whenever a readiness loop happens to look (which would quantize them to its blocking)."""

    def __init__(self, console: "ConsoleFile | RemoteConsole", on_events: OnEvents, *,
                 tick: Callable[[], None] | None = None,
                 interval: float = WATCH_INTERVAL, name: str = "console"):
        self.console = console
        self.on_events = on_events
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.failed: str | None = None  # why the reader thread ended early (a bug), if it did
        self._thread = threading.Thread(target=self._loop, name=f"console-{name}", daemon=True)

    def start(self) -> "ConsoleWatcher":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> None:
        """One read (also callable from other threads, e.g. just before reading the exit reason)."""
        with self._lock:
            try:
                if self.tick is not None:
                    self.tick()
                events = self.console.poll()
                if events:
                    self.on_events(events, time.monotonic())
            except OSError as exc:  # a console that cannot be read is reported by the instance's liveness
                log.debug("console %s: %s", self.console.path, exc)
            except Exception as exc:  # a bug in a console parser: the thread ends, so say so where it shows
                self.failed = f"console reader failed: {type(exc).__name__}: {exc}"
                log.exception("console %s", self.console.path)
                self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.poll()  # the last lines, for the exit reason
        self.console.close()


def parse_text(text: str) -> ConsoleParser:
    p = ConsoleParser()
    p.feed(text.encode() + (b"" if text.endswith("\n") else b"\n"))
    return p
