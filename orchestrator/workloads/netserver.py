"""netserver: the server half of netperf, in the foreground on its control port 12865.

Readiness is a real exchange on netperf's control protocol, not just an open port: the probe
sends a DEBUG_OFF request (netperf 2.x `union netperf_request_struct`: request_type, dummy and
MAXSPECDATA=162 ints, all in network byte order, 656 bytes) and expects the DEBUG_OK response
(response_type 3, serv_errno 0) of the same size. Any netserver able to set up a test answers it;
the child it forks for the connection ends when the probe closes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..tools import Tool
from .base import Connect, ImageRecipe, Workload, WorkloadOptions

CONTROL_INTS = 2 + 162  # request_type, dummy, test_specific_data[MAXSPECDATA]
DEBUG_OFF, DEBUG_OK = 2, 3
CONTROL_MESSAGE = struct.calcsize(f"!{CONTROL_INTS}i")


class NetserverOptions(WorkloadOptions):
    pass


class Netserver(Workload, kind="netserver"):
    port = 12865
    Options = NetserverOptions
    recipe = ImageRecipe(packages=("netperf",), binaries=("/usr/bin/netserver",), directories=("/tmp",))
    tools = (Tool("netserver", "netperf", ("netserver", "-V"), "netperf benchmark server side (non-free)"),)

    def write_config(self, config_dir: Path, *, config_path: str) -> None:
        pass  # netserver takes everything on its command line

    def argv(self, config_path: str) -> list[str]:
        # -D: stay in the foreground (the platform supervises it); -4: listen on IPv4 (the lab network).
        return ["/usr/bin/netserver", "-D", "-4", "-p", str(self.port)]

    def probe(self, connect: Connect) -> bool:
        with connect() as s:
            s.sendall(struct.pack(f"!{CONTROL_INTS}i", DEBUG_OFF, *([0] * (CONTROL_INTS - 1))))
            data = b""
            while len(data) < CONTROL_MESSAGE:
                chunk = s.recv(CONTROL_MESSAGE - len(data))
                if not chunk:
                    return False
                data += chunk
        response_type, serv_errno = struct.unpack("!2i", data[:8])
        return response_type == DEBUG_OK and serv_errno == 0
