"""Configuration fingerprints: what a series' numbers depend on besides the code under test.

A fingerprint is a flat mapping (``host.kernel``, ``tools.qemu-system-x86_64``, ``image_digest``,
``accel``, ``suite_hash`` ...) built from a run's provenance and the provenance of one series'
samples. Two nights with different fingerprints are not comparable: the nightly analysis starts a
new baseline at the change and reports it as a configuration change naming what changed, never as
a regression.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

# Host facts that change what a machine measures (hostname is in the series key; facts_error is noise).
HOST_FACTS = ("cpu_model", "cores", "cpu_threads", "cpu_virt", "memory_mb", "kernel", "os", "arch")
# Per-sample provenance that names what was booted and how.
SAMPLE_FACTS = ("image_digest", "accel", "suite_hash", "platform_kind", "nic")
MISSING = "(none)"


@dataclass(frozen=True)
class Fingerprint:
    facts: tuple[tuple[str, str], ...]  # sorted (key, value) pairs

    @classmethod
    def of(cls, facts: Mapping[str, Any]) -> "Fingerprint":
        return cls(tuple(sorted((k, _text(v)) for k, v in facts.items())))

    def as_dict(self) -> dict[str, str]:
        return dict(self.facts)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.facts).encode()).hexdigest()[:12]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def fingerprint(run_provenance: Mapping[str, Any], sample_provenances: Iterable[Mapping[str, Any]]) -> Fingerprint:
    """The fingerprint of one series in one run.

    Host facts come from the run (the server, and the client when it is another host); tool
    versions, image digest, accelerator and suite hash from the series' samples. Tools are taken
    whole: a QEMU upgrade starts a new baseline for native too, which costs a few nights of history
    but never blames a tool change on the code.
    """
    facts: dict[str, Any] = {}
    for side in ("server", "client"):
        host = run_provenance.get(side) or {}
        for k in HOST_FACTS:
            if k in host:
                facts[f"{'host' if side == 'server' else 'client'}.{k}"] = host[k]
    for prov in sample_provenances:
        for name, version in (prov.get("tools") or {}).items():
            facts[f"tools.{name}"] = version
        for k in SAMPLE_FACTS:
            if prov.get(k) is not None:
                facts[k] = prov[k]
        if not run_provenance.get("server") and isinstance(prov.get("host"), dict):
            for k in HOST_FACTS:
                if k in prov["host"]:
                    facts.setdefault(f"host.{k}", prov["host"][k])
    return Fingerprint.of(facts)


def diff(old: Fingerprint, new: Fingerprint) -> list[str]:
    """What changed between two fingerprints, one entry per key: 'tools.qemu: 7.2.0 -> 8.0.0'."""
    return diff_maps(old.as_dict(), new.as_dict())


def diff_maps(a: Mapping[str, str], b: Mapping[str, str]) -> list[str]:
    return [f"{k}: {a.get(k, MISSING)} -> {b.get(k, MISSING)}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


# Provenance that is not part of the fingerprint but may explain a change: shown beside a regression.
CONTEXT_FACTS = ("testbed_rev", "testbed_version", "placement", "platform_options", "workload_options",
                 "benchmark_options", "client_host")


def context(sample_provenance: Mapping[str, Any]) -> dict[str, str]:
    """The provenance beside the fingerprint (testbed revision, placement, options); diff it with diff_maps."""
    return {k: _text(sample_provenance[k]) for k in CONTEXT_FACTS if k in sample_provenance}


