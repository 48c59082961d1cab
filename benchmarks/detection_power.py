#!/usr/bin/env python3
"""Detection power and false-alarm rate of testbed's nightly change-point detection, measured.

Noise shaped like this machine's: for every series in a result store with enough nights, the
within-run CV (of the raw samples of a night) and the between-night drift (SD of the log nightly
medians beyond what the within-run noise explains) are measured. When the store is absent or too
thin, a small real suite (benchmarks/nightly_noise.yaml: native and runc, redis cold start and
redis-benchmark SET, 5 repetitions, lab subnet 10.93.0.0/24) is run --collect times first (needs
root and the provisioned runtimes); if that is impossible the documented defaults are used and the
output says so.

Each synthetic history draws one measured series' noise; then, per method (PELT, Binseg, and
E-divisive through apache-otava when it is installed) and threshold, it prints:
  * false alarms: the share of (series, night) verdicts that flag a regression with no change
    (also: any change, regression or improvement), nights 6..20 of a 20-night history;
  * detection within 2 nights of a step of 5%, 10% and 30% after 10 quiet nights: flagged as a
    regression naming the first changed night, on that night or the next;
  * a slow creep (1% a night for 10 nights): flagged by its 10th night.
Benjamini-Hochberg is not applied (one series per night: BH over m=1 is the plain alpha; over
many null series it only lowers the rate).

    .venv/bin/python benchmarks/detection_power.py [--store S] [--histories 1000] [--drift normal|t5]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.errors import TestbedError
from orchestrator.results.changepoint import (
    DetectorConfig, candidates, classify, decisive_p, noise_scale, select, within_se)
from orchestrator.results.history import extract_series, open_store
from orchestrator.results.store import suite_names

HERE = Path(__file__).resolve().parent
NOISE_SUITE = HERE / "nightly_noise.yaml"
MIN_NIGHTS_FOR_NOISE = 5
DEFAULT_NOISE = [("documented default", 0.03, 0.02, 5)]  # (series, within CV, drift, reps) when a store is thin
SHIFTS = (0.05, 0.10, 0.30)
BASE_NIGHTS = 10       # quiet nights before a step
NULL_NIGHTS = 20       # length of a no-change history
NULL_VERDICT_NIGHTS = (6, 9, 12, 15, 18, 20)  # nights (1-based) whose verdict is taken
CREEP = (0.01, 10)     # +1% a night for 10 nights
DEFAULT_THRESHOLD = 0.05
SWEEP = ((0.03, 0.005), (0.03, 0.01), (0.03, 0.02), (0.03, 0.03), (0.10, 0.01), (0.10, 0.05))


@dataclass(frozen=True)
class Noise:
    series: str
    cv: float      # within-run coefficient of variation (log-scale SD of the raw samples)
    drift: float   # between-night SD of the log median, beyond the within-run noise (robust estimate)
    reps: int      # samples per night
    drift_sd: float | None = None  # the plain SD estimate, level shifts included (shown, not simulated)
    nights: int | None = None


# --- noise from the store -------------------------------------------------------------------

def measure_noise(store_path: Path) -> list[Noise]:
    store = open_store(store_path)
    out = []
    for suite in suite_names(store):
        try:
            series, _ = extract_series(store, suite)
        except TestbedError:
            continue
        for s in series:
            nights = s.configuration_segments()[-1]
            if len(nights) < MIN_NIGHTS_FOR_NOISE or any(n.median <= 0 for n in nights):
                continue
            raw = [n.samples for n in nights]
            logs = [np.log([x for x in r if x > 0]) for r in raw]
            cvs = [float(np.std(v, ddof=1)) for v in logs if len(v) >= 2]
            if not cvs:
                continue
            se = within_se(raw)
            y = np.log([n.median for n in nights])
            # Robust between-night SD (MAD of night-to-night differences / sqrt 2): a level shift
            # in the store (another tenant's load, a real change) does not count as noise.
            robust = noise_scale(y, 0.0)
            reps = int(np.median([len(r) for r in raw]))
            name = f"{s.key.platform} {s.key.workload} {s.key.benchmark} {s.key.metric} {s.key.point}".strip()
            out.append(Noise(name, float(np.median(cvs)), math.sqrt(max(robust ** 2 - se ** 2, 0.0)), reps,
                             math.sqrt(max(float(np.var(y, ddof=1)) - se ** 2, 0.0)), len(nights)))
    store.close()
    return out


def collect(store_path: Path, runs: int) -> None:
    """Run the small noise suite `runs` times into the store (each bounded by a timeout)."""
    testbed = Path(sys.executable).parent / "testbed"
    for i in range(runs):
        print(f"collecting noise: run {i + 1}/{runs} of {NOISE_SUITE.name} into {store_path}", file=sys.stderr)
        try:
            subprocess.run([str(testbed), "run", str(NOISE_SUITE), "--store", str(store_path)], timeout=900,
                           check=True, stdout=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"collecting noise failed ({exc}); using what the store has", file=sys.stderr)
            return


def parse_noise(text: str) -> Noise:
    try:
        parts = [float(x) for x in text.split(":")]
        cv, drift = parts[0], parts[1]
        reps = int(parts[2]) if len(parts) > 2 else 5
    except (ValueError, IndexError):
        raise SystemExit(f"--noise {text!r}: expected CV:DRIFT[:REPS], e.g. 0.03:0.01") from None
    return Noise(f"cv {cv:.1%}, drift {drift:.1%}", cv, drift, reps)


# --- synthetic histories --------------------------------------------------------------------

def night(rng: np.random.Generator, noise: Noise, level: float, drift_dist: str) -> tuple[float, list[float]]:
    """One synthetic night at log level `level`: drift between nights, lognormal noise within."""
    if drift_dist == "t5":  # heavier tails, same SD: occasional bad nights
        drift = noise.drift * float(rng.standard_t(5)) / math.sqrt(5 / 3)
    else:
        drift = noise.drift * float(rng.standard_normal())
    samples = np.exp(level + drift + noise.cv * rng.standard_normal(noise.reps)) * 100.0
    return float(np.median(samples)), [float(x) for x in samples]


def history(rng, noise: Noise, levels: list[float], drift_dist: str) -> tuple[list[float], list[list[float]]]:
    nights = [night(rng, noise, lv, drift_dist) for lv in levels]
    return [m for m, _ in nights], [r for _, r in nights]


@dataclass
class Case:
    kind: str              # null | shift-0.05 | ... | creep
    medians: list[float]
    raw: list[list[float]]
    verdict_nights: tuple[int, ...]   # 1-based nights whose verdict is taken
    first_changed: int | None          # 0-based index of the first changed night


def cases(rng, noises: list[Noise], histories: int, drift_dist: str) -> list[Case]:
    out = []
    for _ in range(histories):
        noise = noises[rng.integers(len(noises))]
        m, r = history(rng, noise, [0.0] * NULL_NIGHTS, drift_dist)
        out.append(Case("null", m, r, NULL_VERDICT_NIGHTS, None))
        for shift in SHIFTS:  # the metric is a time: a larger value is a regression
            m, r = history(rng, noise, [0.0] * BASE_NIGHTS + [math.log1p(shift)] * 2, drift_dist)
            out.append(Case(f"shift-{shift:g}", m, r, (BASE_NIGHTS + 1, BASE_NIGHTS + 2), BASE_NIGHTS))
        step, length = CREEP
        m, r = history(rng, noise, [0.0] * BASE_NIGHTS + [math.log1p(step * (i + 1)) for i in range(length)],
                       drift_dist)
        out.append(Case("creep", m, r, (BASE_NIGHTS + 4, BASE_NIGHTS + 7, BASE_NIGHTS + length), BASE_NIGHTS))
    return out


# --- evaluation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    confirm: str
    alpha: float
    threshold: float


def found_candidates(all_cases: list[Case], cfg: DetectorConfig) -> list[list[list]]:
    """Per case, per verdict night: the candidate changes (detection is the expensive part)."""
    return [[candidates(c.medians[:n], c.raw[:n], cfg) for n in c.verdict_nights] for c in all_cases]


def rates(all_cases: list[Case], found: list[list[list]], d: Decision) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for case, per_night in zip(all_cases, found):
        if case.kind == "null":
            hits = counts.setdefault("fa_regression", [0, 0])
            anyc = counts.setdefault("fa_any", [0, 0])
            for cands in per_night:
                c = select(cands, d.confirm)
                v = classify(c, decisive_p(c, d.confirm) if c else 1.0, d.alpha, d.threshold, "lower")
                hits[0] += v == "regression"
                anyc[0] += v != "ok"
                hits[1] += 1
                anyc[1] += 1
            continue
        detected = False
        for cands in per_night:
            c = select(cands, d.confirm)
            v = classify(c, decisive_p(c, d.confirm) if c else 1.0, d.alpha, d.threshold, "lower")
            # a step must name its first night; a creep is found when flagged at all
            if v == "regression" and c is not None and (case.kind == "creep" or c.first_night == case.first_changed):
                detected = True
                break
        tally = counts.setdefault(case.kind, [0, 0])
        tally[0] += detected
        tally[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def wilson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def pct(k: int, n: int, ci: bool = False) -> str:
    s = f"{100 * k / n:5.1f}%"
    if ci:
        lo, hi = wilson(k, n)
        s += f" [{100 * lo:.1f}-{100 * hi:.1f}]"
    return s


COLUMNS = ("fa_regression", "fa_any", "shift-0.05", "shift-0.1", "shift-0.3", "creep")
HEADERS = ("false alarm/night [95% CI]", "any change", "5% in 2", "10% in 2", "30% in 2", "creep 1%/n")


def row(label: str, r: dict[str, tuple[int, int]]) -> str:
    cells = [pct(*r["fa_regression"], ci=True), pct(*r["fa_any"])] + [pct(*r[k]) for k in COLUMNS[2:]]
    meets = r["fa_regression"][0] / r["fa_regression"][1] <= 0.01 and r["shift-0.1"][0] / r["shift-0.1"][1] >= 0.95
    return f"| {label} | " + " | ".join(cells) + f" | {'yes' if meets else 'no'} |"


def header(first: str) -> str:
    cols = (first, *HEADERS, "meets target")
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path(os.environ.get("TESTBED_STORE", "/tmp/testbed-noise.sqlite")),
                    help="result store to take the noise from (default: $TESTBED_STORE or /tmp/testbed-noise.sqlite)")
    ap.add_argument("--collect", type=int, default=8, help="runs of the noise suite to make when the store is thin")
    ap.add_argument("--histories", type=int, default=1000, help="synthetic histories per condition")
    ap.add_argument("--drift", choices=("normal", "t5"), default="normal", help="distribution of between-night drift")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--edivisive-p", type=float, nargs="+", default=[0.01],
                    help="E-divisive max p-values to try (apache-otava is slow: ~3x PELT per verdict)")
    ap.add_argument("--noise", action="append", metavar="CV:DRIFT[:REPS]",
                    help="simulate this noise instead of the store's, e.g. 0.03:0.01 for a quiet lab host "
                         "(repeatable: each history draws one)")
    ap.add_argument("--sweep", action="store_true",
                    help="also tabulate the defaults over a grid of within-run CV and between-night drift")
    ap.add_argument("--methods", default="pelt,binseg,edivisive", help="comma-separated detectors to compare")
    args = ap.parse_args()

    if args.noise:
        noises = [parse_noise(text) for text in args.noise]
        source = "given with --noise"
    else:
        noises = measure_noise(args.store) if args.store.is_file() else []
        if not noises and args.collect > 0:
            collect(args.store, args.collect)
            noises = measure_noise(args.store) if args.store.is_file() else []
        source = f"measured in {args.store}"
    if not noises:
        noises = [Noise(*n) for n in DEFAULT_NOISE]
        source = "DOCUMENTED DEFAULTS (the store is too thin and no run could be made)"
    print(f"## Noise ({source})\n")
    print("| series | nights | within-run CV | between-night drift (robust) | drift (plain SD) | drift / within SE "
          "| samples/night |\n|---|---|---|---|---|---|---|")
    for n in noises:
        se = n.cv * math.sqrt(math.pi / 2) / math.sqrt(n.reps)
        sd = f"{100 * n.drift_sd:.1f}%" if n.drift_sd is not None else "-"
        print(f"| {n.series} | {n.nights or '-'} | {100 * n.cv:.1f}% | {100 * n.drift:.1f}% | {sd} | "
              f"{n.drift / se:.1f} | {n.reps} |")
    print(f"\nmedian within-run CV {100 * float(np.median([n.cv for n in noises])):.1f}%, median drift "
          f"{100 * float(np.median([n.drift for n in noises])):.1f}%; drift {args.drift}; {args.histories} histories "
          f"per condition, each drawing one series' noise\n")

    rng = np.random.default_rng(args.seed)
    all_cases = cases(rng, noises, args.histories, args.drift)
    methods = [m for m in args.methods.split(",") if m]
    if "edivisive" in methods:
        try:
            import otava  # noqa: F401
        except ImportError:
            print("E-divisive: apache-otava is not installed (pip install apache-otava); skipped\n")
            methods.remove("edivisive")
    grid = {"pelt": (2.0, 3.0, 5.0), "binseg": (2.0, 3.0, 5.0), "edivisive": tuple(args.edivisive_p)}
    default = DetectorConfig()
    base = Decision(default.confirm, default.alpha, DEFAULT_THRESHOLD)
    found_default = None
    print(f"## Per method and detection threshold (confirm {base.confirm}, alpha {base.alpha}, magnitude "
          f"{base.threshold:.0%})\n")
    print(header("method, threshold"))
    for method in methods:
        for pen in grid[method]:
            cfg = replace(default, method=method, penalty=pen)
            t0 = time.perf_counter()
            found = found_candidates(all_cases, cfg)
            secs = time.perf_counter() - t0
            label = f"{method} p<{pen:g}" if method == "edivisive" else f"{method} pen {pen:g} ln n"
            print(row(f"{label} ({secs:.0f} s)", rates(all_cases, found, base)), flush=True)
            if cfg == default:
                found_default = found
    if found_default is None:
        found_default = found_candidates(all_cases, default)
    print(f"\n## Confirmation and alpha ({default.method}, pen {default.penalty:g} ln n, magnitude "
          f"{DEFAULT_THRESHOLD:.0%})\n")
    print(header("confirm, alpha"))
    for confirm in ("both", "nights", "raw"):
        for alpha in (0.005, 0.01, 0.02, 0.05):
            print(row(f"{confirm}, {alpha:g}", rates(all_cases, found_default,
                                                      Decision(confirm, alpha, DEFAULT_THRESHOLD))))
    print(f"\n## Magnitude threshold ({default.method}, pen {default.penalty:g} ln n, confirm {base.confirm}, "
          f"alpha {base.alpha})\n")
    print(header("magnitude"))
    for thr in (0.0, 0.03, 0.05, 0.10):
        print(row(f"{thr:.0%}", rates(all_cases, found_default, Decision(base.confirm, base.alpha, thr))))
    if args.sweep:
        print(f"\n## Defaults over a grid of noise ({default.method}, pen {default.penalty:g} ln n, confirm "
              f"{base.confirm}, alpha {base.alpha}, magnitude {base.threshold:.0%}; 5 samples a night)\n")
        print(header("within CV, drift"))
        for cv, drift in SWEEP:
            grid_cases = cases(rng, [Noise("sweep", cv, drift, 5)], args.histories, args.drift)
            print(row(f"{cv:.0%}, {drift:.1%}", rates(grid_cases, found_candidates(grid_cases, default), base)),
                  flush=True)
    print("\ntarget: at most 1% false alarms per series per night and at least 95% detection of a 10% shift "
          "within 2 nights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
