"""What OSv's and rumprun's consoles say, line by line, as Timeline phases and guest figures.

Lines come from virt/console.py's ConsoleFile (escape sequences and carriage returns already
stripped). Each parser turns a line into zero or more observations: a label (kept with its
host-side time in the instance's provenance, e.g. `net_configured`) and the Timeline phases
that label stands for. Parsers also notice when the guest has finished for good (rumprun's
`halted`, an OSv abort), because QEMU keeps running after that and testbed must stop it.

OSv (`loader.cc`)
  OSv v0.57.0-...                          banner
  eth0: 10.0.0.5                           net_configured
  Booted up in N ms                        booted -> kernel_up
  Cmdline: /app ...                        cmdline
  syscall(): unimplemented system call N   unimplemented_syscall -> init_started
  <the app's first line>                   app_output -> init_started

init_started is the first line after `Cmdline:`, whichever of the last two it is: both come from
the running program (OSv prints the first when the program calls what OSv lacks).

rumprun (hw platform, NetBSD rump kernel)
  rump kernel bare metal bootstrap         bootstrap
  NetBSD 7.99.34 (RUMP-ROAST)              rump_kernel
  vioif0 at virtio0: ...                   nic_probed
  === calling "app" main() ===             main_called -> kernel_up, init_started
  <app's own lines>                        (the last one kept: app_line)
  === main() of "app" returned N ===       main_returned
  === ERROR: _exit(N) called ===           exit_called (exit() without a return)
  halted                                   halted (instance is finished)
  FATAL TRAP: general protection ...       fatal_trap (finished; no "halted")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .console import ANSI

OSV_BANNER = re.compile(r"^OSv (v\S+)")
OSV_IFACE = re.compile(r"^(eth\d+): (\d{1,3}(?:\.\d{1,3}){3})\s*$")
OSV_BOOTED = re.compile(r"^Booted up in (\d+(?:\.\d+)?) ms")
OSV_CMDLINE = re.compile(r"^Cmdline: (.*)$")
# OSv's own line when the program makes a system call OSv lacks: the program is running, but the
# line is not its output. Debian's glibc registers rseq (334) in its dynamic linker before main().
OSV_UNIMPLEMENTED = re.compile(r"^syscall\(\): unimplemented system call (\d+)")
# OSv prefixes some of these with the program's path ("/redis-server: failed looking up symbol X"),
# and every fatal error ends in a "[backtrace]" block after which the guest hangs.
OSV_FATAL = re.compile(r"^(Aborted|Assertion failed|page fault outside application|Failed to load object"
                       r"|Unhandled signal|\[backtrace\])|failed looking up symbol", re.IGNORECASE)

RUMP_BOOTSTRAP = re.compile(r"rump kernel bare metal bootstrap")
RUMP_NETBSD = re.compile(r"^(NetBSD \S+) \(([^)]*)\)")
RUMP_VIOIF = re.compile(r"^(vioif\d+) at ")
RUMP_MAIN = re.compile(r'^=== calling "([^"]*)" main\(\) ===')
RUMP_RETURNED = re.compile(r'^=== main\(\) of "([^"]*)" returned (-?\d+) ===')
RUMP_EXIT = re.compile(r"^=== (?:ERROR: )?_exit\((-?\d+)\) called ===")  # exit(), or after main returned
RUMP_IGNORED = re.compile(r"^rumprun: call to ``[^`']*'' ignored")  # unsupported syscalls, not the app's words
RUMP_HALTED = re.compile(r"^halted\b")
RUMP_PANIC = re.compile(r"^panic: (.*)$", re.IGNORECASE)  # rump kernel "panic:", bmk platform "PANIC:"
RUMP_TRAP = re.compile(r"^FATAL TRAP: (.*)$")  # the CPU faulted; the platform halts without "halted"


@dataclass
class Observation:
    label: str
    phases: tuple[str, ...] = ()
    text: str = ""


@dataclass
class UnikernelConsole:
    """Common state: what was seen, whether the guest is finished and why."""

    seen: dict[str, str] = field(default_factory=dict)  # label -> the line that showed it (first one)
    guest: dict[str, float | None] = field(default_factory=dict)  # guest's own figures, ms
    facts: dict[str, str] = field(default_factory=dict)  # version strings, configured address
    finished: bool = False  # the guest will do nothing more although QEMU may still run
    finish_reason: str | None = None
    lines: int = 0

    def feed_line(self, text: str) -> list[Observation]:
        text = ANSI.sub("", text).replace("\r", "").strip()
        if not text:
            return []
        self.lines += 1
        out = self._line(text)
        for ob in out:
            self.seen.setdefault(ob.label, text)
        return out

    def feed_text(self, text: str) -> list[Observation]:
        """All lines of `text` (tests and post-mortems)."""
        out: list[Observation] = []
        for line in text.split("\n"):
            out += self.feed_line(line)
        return out

    def _line(self, text: str) -> list[Observation]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class OsvConsole(UnikernelConsole):
    _after_cmdline: bool = False

    def _line(self, text: str) -> list[Observation]:
        if m := OSV_BANNER.match(text):
            self.facts["osv_version"] = m.group(1)
            return [Observation("banner", (), text)]
        if m := OSV_IFACE.match(text):
            self.facts.setdefault("guest_address", m.group(2))
            return [Observation("net_configured", (), text)]
        if m := OSV_BOOTED.match(text):
            ms = float(m.group(1))
            # Under TCG OSv has no usable clock and prints 0.00: that is no figure, not zero.
            self.guest["boot"] = ms if ms > 0 else None
            return [Observation("booted", ("kernel_up",), text)]
        if m := OSV_CMDLINE.match(text):
            self.facts["osv_console_cmdline"] = m.group(1)
            self._after_cmdline = True
            return [Observation("cmdline", (), text)]
        if OSV_FATAL.search(text):
            if not self.finished:
                self.finished, self.finish_reason = True, f"OSv: {text}"
            return [Observation("fatal", (), text)]
        if not self._after_cmdline:
            return []
        if m := OSV_UNIMPLEMENTED.match(text):
            calls = self.facts.get("osv_unimplemented_syscalls", "").split()
            if m.group(1) not in calls:
                self.facts["osv_unimplemented_syscalls"] = " ".join([*calls, m.group(1)])
            return [Observation("unimplemented_syscall", ("init_started",), text)]
        return [Observation("app_output", ("init_started",), text)]


@dataclass
class RumprunConsole(UnikernelConsole):
    exit_code: int | None = None
    app_line: str | None = None  # the application's last own line: usually says why it stopped
    _in_main: bool = False

    def _line(self, text: str) -> list[Observation]:
        if RUMP_BOOTSTRAP.search(text):
            return [Observation("bootstrap", (), text)]
        if m := RUMP_NETBSD.match(text):
            self.facts["rump_kernel"] = f"{m.group(1)} ({m.group(2)})"
            return [Observation("rump_kernel", (), text)]
        if m := RUMP_VIOIF.match(text):
            return [Observation("nic_probed", (), text)]
        if m := RUMP_MAIN.match(text):
            self.facts.setdefault("rumprun_app", m.group(1))
            self._in_main = True
            # rumprun has configured its network and disks and hands over to the application.
            return [Observation("main_called", ("kernel_up", "init_started"), text)]
        if m := RUMP_RETURNED.match(text):
            self._in_main = False
            self.exit_code = int(m.group(2))
            self.finish_reason = f'rumprun: main() of "{m.group(1)}" returned {self.exit_code}'
            return [Observation("main_returned", (), text)]
        if m := RUMP_EXIT.match(text):
            self._in_main = False
            if self.exit_code is None:  # exit() without returning from main (after a return it repeats)
                self.exit_code = int(m.group(1))
                app = self.facts.get("rumprun_app", "the application")
                self.finish_reason = f'rumprun: "{app}" called _exit({self.exit_code})'
            return [Observation("exit_called", (), text)]
        if m := RUMP_PANIC.match(text):
            self.finish_reason = self.finish_reason or f"rumprun: panic: {m.group(1)}"
            return [Observation("panic", (), text)]
        if m := RUMP_TRAP.match(text):
            self.finish_reason = f"rumprun: FATAL TRAP: {m.group(1)}"
            self._end(None)
            return [Observation("fatal_trap", (), text)]
        if RUMP_HALTED.search(text):
            self._end("halted")
            return [Observation("halted", (), text)]
        if self._in_main and not RUMP_IGNORED.match(text):
            self.app_line = text
        return []

    def _end(self, event: str | None) -> None:
        """The guest is finished: the reason is the cause, the event, and the app's last words."""
        self.finished = True
        parts = [self.finish_reason or f"rumprun: {event}"]
        if self.finish_reason and event:
            parts.append(event)
        if self.app_line:
            parts.append(f"last output: {self.app_line}")
        self.finish_reason = "; ".join(parts)
