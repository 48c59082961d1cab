"""A paper suite's `paper:`, `published:` and `claims:` blocks, typed and checked at load time.

    paper: {title: "...", venue: OSDI, year: 2014, table: "Table 1", url: https://...}
    published:
      source: "Table 1"
      hardware: "Intel Xeon E5-2430, Intel X520 (82599) 10G NIC"
      accel: none                       # what the paper's VMs ran on: kvm | xen | none (no VM)
      baseline: Linux                   # the paper's baseline system: ratios are to it
      values:
        - {system: Linux, what: "UDP echo, kernel processing per packet", value: 3.36, unit: us,
           ours: {platform: native, metric: latency_p50_us, point: {test: UDP_RR}}}
    claims:
      - {id: vm-slowest, kind: order, statement: "...", metric: startup_ms, increasing: [native, runc, linux-vm]}
      - {id: gvisor-2x, kind: ratio, statement: "...", metric: ns_per_call, platform: gvisor, baseline: runc,
         at_least: 2}
      - {id: runc-close, kind: close, statement: "...", metric: ns_per_call, platform: runc, baseline: native,
         within_pct: 25}

One claim model for the three kinds (so every error is `claims[i].field`, never a union branch);
a model validator says which fields a kind needs. Whether a claim's platforms and metric exist in
the suite is checked by orchestrator/plan.py, which knows the suite's entries and benchmarks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..units import UNITS

ENTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"

class PaperModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1)
    venue: str = Field(min_length=1, description="e.g. OSDI, HotCloud, VEE")
    year: int = Field(ge=1970, le=2100)
    figure: str | None = Field(None, description="the figure this suite reproduces, e.g. 'Figure 5'")
    table: str | None = Field(None, description="or the table, e.g. 'Table 1'")
    authors: str = ""
    url: str = ""

    @model_validator(mode="after")
    def figure_or_table(self):
        if not self.figure and not self.table:
            raise ValueError("name the figure or the table this suite reproduces (figure: 'Figure 5' or "
                             "table: 'Table 1')")
        return self

    @property
    def where(self) -> str:
        return " / ".join(x for x in (self.figure, self.table) if x)

    def citation(self) -> str:
        return f"{self.title} ({self.venue} {self.year}), {self.where}"


class OursModel(BaseModel):
    """Which of our numbers stands beside a published one."""

    model_config = ConfigDict(extra="forbid")
    platform: str = Field(pattern=ENTRY_NAME)
    metric: str = Field(min_length=1)
    workload: str | None = None
    benchmark: str | None = None
    point: dict[str, Any] = Field(default_factory=dict, description="sweep parameters that select the number")


class PublishedValueModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str = Field(min_length=1, description="the paper's name for what it measured (Linux, Arrakis/P, OSv)")
    what: str = Field("", description="what the number is, in the paper's words")
    value: float
    unit: str
    point: dict[str, Any] = Field(default_factory=dict, description="the paper's parameters (file size, clients)")
    approx: bool = Field(False, description="read off a figure rather than printed in the text or a table")
    ours: OursModel | None = None

    @field_validator("unit")
    @classmethod
    def known_unit(cls, value: str) -> str:
        if value not in UNITS:
            raise ValueError(f"unknown unit {value!r}; expected one of {', '.join(UNITS)}")
        return value


class PublishedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="where in the paper: section, figure, table")
    hardware: str = Field(min_length=1, description="the paper's machines, as it describes them")
    accel: Literal["kvm", "xen", "none"] = Field("kvm", description="what the paper's VMs ran on (none: no VM)")
    nic: str = Field("", description="the paper's NIC, e.g. 'Intel 82599 10G (SR-IOV)'")
    baseline: str | None = Field(None, description="the paper's baseline system; ratios are to it")
    values: list[PublishedValueModel] = Field(default_factory=list)
    note: str = ""

    @model_validator(mode="after")
    def baseline_listed(self):
        if self.baseline is not None and self.values and self.baseline not in {v.system for v in self.values}:
            raise ValueError(f"baseline {self.baseline!r} is not the system of any published value "
                             f"({', '.join(dict.fromkeys(v.system for v in self.values))})")
        return self


ClaimKind = Literal["order", "ratio", "close"]
REQUIREMENTS = ("kvm", "sriov")
# The fields each kind uses; any other kind-specific field given is an error naming these.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "order": ("increasing", "decreasing"),
    "ratio": ("platform", "baseline", "at_least", "at_most", "baseline_point"),
    "close": ("platform", "baseline", "within_pct", "baseline_point"),
}


class ClaimModel(BaseModel):
    """One checkable statement of the paper. Kinds:

    order  the platforms' medians of `metric` are in this order (`increasing` or `decreasing`),
           every neighbour separated by the Mann-Whitney U test (Holm over the claim's pairs)
    ratio  median(platform) / median(baseline) is at least `at_least` and/or at most `at_most`,
           judged by the 95% bootstrap CI of the ratio
    close  that ratio is within `within_pct` % of 1 (the whole CI inside the band)

    `baseline_point` makes the baseline another point of the sweep (e.g. test: openclose_tmp against
    test: openclose_host-tmpfs); baseline may then be the platform itself.
    """

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ENTRY_NAME, description="a short name, unique in the suite")
    kind: ClaimKind
    statement: str = Field(min_length=1, description="what the paper claims, in words")
    metric: str = Field(min_length=1)
    workload: str | None = None
    benchmark: str | None = None
    point: dict[str, Any] = Field(default_factory=dict,
                                  description="sweep parameters the claim is about; unnamed ones: every point")
    source: str = Field("", description="figure, table or section (default: the paper's)")
    requires: list[Literal["kvm", "sriov"]] = Field(
        default_factory=list, description="setup without which our numbers are not comparable (kvm is implied "
                                          "for VM platforms when published.accel is kvm)")
    increasing: list[str] | None = None
    decreasing: list[str] | None = None
    platform: str | None = None
    baseline: str | None = None
    at_least: float | None = Field(None, gt=0)
    at_most: float | None = Field(None, gt=0)
    within_pct: float | None = Field(None, gt=0, lt=100)
    baseline_point: dict[str, Any] | None = Field(None, description="the baseline's sweep parameters, where they "
                                                                      "differ from point's")

    @model_validator(mode="after")
    def fields_of_kind(self):
        given = {f for fields in KIND_FIELDS.values() for f in fields if getattr(self, f) is not None}
        foreign = sorted(given - set(KIND_FIELDS[self.kind]))
        if foreign:
            raise ValueError(f"{', '.join(foreign)} do not apply to a {self.kind} claim; it takes "
                             f"{', '.join(KIND_FIELDS[self.kind])}")
        if self.kind == "order":
            order = self.increasing if self.increasing is not None else self.decreasing
            if (self.increasing is None) == (self.decreasing is None):
                raise ValueError("an order claim gives exactly one of increasing: [a, b, ...] or decreasing: [...]")
            assert order is not None
            if len(order) < 2 or len(set(order)) != len(order):
                raise ValueError("an order claim lists at least two different platforms")
            return self
        if not self.platform or not self.baseline:
            raise ValueError(f"a {self.kind} claim names platform: and baseline: (median of platform / baseline)")
        if self.platform == self.baseline and not self.baseline_point:
            raise ValueError("platform and baseline are the same (give baseline_point to compare two points of one "
                             "platform)")
        if self.kind == "ratio":
            if self.at_least is None and self.at_most is None:
                raise ValueError("a ratio claim gives at_least: X and/or at_most: Y")
            if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
                raise ValueError(f"at_least {self.at_least:g} is above at_most {self.at_most:g}")
        elif self.within_pct is None:
            raise ValueError("a close claim gives within_pct: X (the ratio within X% of 1)")
        return self

    @property
    def platforms(self) -> list[str]:
        if self.kind == "order":
            return list(self.increasing or self.decreasing or [])
        return [p for p in (self.platform, self.baseline) if p]


def claim_ids_unique(claims: list[ClaimModel]) -> list[int]:
    """Indexes of claims whose id an earlier claim already has."""
    seen: set[str] = set()
    out = []
    for i, c in enumerate(claims):
        if c.id in seen:
            out.append(i)
        seen.add(c.id)
    return out


def paper_provenance(paper: PaperModel | None, published: PublishedModel | None,
                     claims: list[ClaimModel]) -> dict:
    """What a run records of its suite's paper blocks, so its claims are judged from what it ran."""
    if paper is None and published is None and not claims:
        return {}
    return {"paper_suite": {
        "paper": paper.model_dump(mode="json") if paper else None,
        "published": published.model_dump(mode="json") if published else None,
        "claims": [c.model_dump(mode="json", exclude_none=True) for c in claims],
    }}


class PaperSuite:
    """The paper blocks a run recorded (`paper_suite` in its provenance), typed again for judging."""

    def __init__(self, paper: PaperModel | None, published: PublishedModel | None, claims: list[ClaimModel]):
        self.paper, self.published, self.claims = paper, published, claims

    @classmethod
    def of(cls, model: Any) -> PaperSuite | None:
        """From a SuiteModel (or anything with .paper, .published, .claims); None without any of them."""
        if model.paper is None and model.published is None and not model.claims:
            return None
        return cls(model.paper, model.published, list(model.claims))

    @classmethod
    def from_provenance(cls, provenance: dict) -> PaperSuite | None:
        """None when the run recorded no paper blocks; ValueError (pydantic's) when they no longer validate."""
        blocks = provenance.get("paper_suite")
        if not blocks:
            return None
        return cls(PaperModel.model_validate(blocks["paper"]) if blocks.get("paper") else None,
                   PublishedModel.model_validate(blocks["published"]) if blocks.get("published") else None,
                   [ClaimModel.model_validate(c) for c in blocks.get("claims") or []])
