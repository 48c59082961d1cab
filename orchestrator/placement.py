"""Where a run's two sides go: the server host and the load generator's host, and their CPUs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config.suite import PlacementModel
from .errors import ConfigError
from .hosts.base import Host
from .hosts.local import LocalHost


@dataclass
class Placement:
    server: Host
    client: Host
    server_cpus: list[int] | None
    client_cpus: list[int] | None

    @property
    def same_host(self) -> bool:
        return self.server.name == self.client.name

    def as_dict(self) -> dict:
        return {"server_host": self.server.name, "client_host": self.client.name,
                "server_cpus": self.server_cpus, "client_cpus": self.client_cpus}


def split_cpus(count: int) -> tuple[list[int] | None, list[int] | None]:
    """auto placement: load generator on the first half of the CPUs, server on the rest."""
    if count < 2:
        return None, None
    half = count // 2
    return list(range(half, count)), list(range(half))


def host_named(name: str, lab_file: str | None, suite_path: Path, trust_new: bool) -> Host:
    if name in ("localhost", "local"):
        return LocalHost()
    if not lab_file:
        raise ConfigError(f"{suite_path}: placement: host {name!r} needs lab.lab_file naming the lab hosts file")
    from .config.lab import load_lab
    from .hosts.ssh import SshHost

    lab_path = Path(lab_file) if Path(lab_file).is_absolute() else suite_path.parent / lab_file
    return SshHost.from_lab(load_lab(lab_path).host(name), trust_new=trust_new)


def lab_addresses(lab_file: str | None, suite_path: Path) -> list[str]:
    """Every lab_address in the lab file: addresses a run must not give its instances."""
    if not lab_file:
        return []
    from .config.lab import load_lab

    lab_path = Path(lab_file) if Path(lab_file).is_absolute() else suite_path.parent / lab_file
    return [h.lab_address for h in load_lab(lab_path).hosts if h.lab_address]


def cpu_count(host: Host) -> int:
    return int(host.run(["nproc"], timeout=10).stdout.strip())


def resolve(model: PlacementModel, server: Host, client: Host) -> Placement:
    """Auto placement splits one host's CPUs; on two hosts each side keeps all of its own."""
    same = server.name == client.name
    count = cpu_count(server)
    auto_server, auto_client = split_cpus(count) if same else (None, None)

    def choose(value, auto):
        return auto if value == "auto" else (None if value == "none" else value)

    return Placement(server, client, choose(model.server_cpus, auto_server), choose(model.client_cpus, auto_client))
