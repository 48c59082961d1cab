"""testbed's one entry point. Errors inside are exceptions; here they become one line and an exit code."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__, paths
from .errors import ConfigError, TestbedError

console = Console()
err_console = Console(stderr=True)


class RichReporter:
    def __init__(self):
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err_console, transient=False)
        self.task = None

    def start(self, total: int, run_id: str) -> None:
        self.progress.start()
        self.task = self.progress.add_task(f"run {run_id}", total=total)

    def phase(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=text[:70])
        else:
            err_console.print(f"[dim]{text}[/dim]")

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def warn(self, text: str) -> None:
        self.progress.console.print(f"[yellow]warning:[/yellow] {text}")

    def sample(self, row: dict) -> None:
        pass

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


def fail(exc: TestbedError) -> None:
    # Plain writes: a terminal-width wrap would split the one line a user (or a script) reads.
    for line in str(exc).splitlines() or [type(exc).__name__]:
        sys.stderr.write(f"testbed: error: {line}\n")
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="testbed")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def cli(verbose: bool) -> None:
    """testbed: boot one application on many execution platforms (native, runc, gVisor, Linux VMs,
    unikernels) on an isolated lab network, load it with the papers' benchmarks, and store every
    sample with where, on what and how it was measured."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _store(path: str | None):
    from .results.store import Store

    return Store(Path(path) if path else paths.default_store())


@cli.command()
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember unknown SSH host keys of lab hosts.")
@click.option("--check", is_flag=True, help="Only validate the suite and print its matrix.")
def run(suite: Path, store_path: str | None, trust_new_host_key: bool, check: bool) -> None:
    """Run SUITE (a YAML file in suites/) and print the comparison table."""
    from .config.suite import load_suite
    from .runner import Runner

    s = load_suite(suite)
    if check:
        console.print(f"{s.path}: {len(s.cells)} cells, digest {s.digest[:12]}")
        for c in s.cells:
            console.print(f"  {c.platform} x {c.workload} x {c.benchmark}")
        return
    for note in s.skipped:
        err_console.print(f"[dim]note: {note}; those cells are skipped[/dim]")
    store = _store(store_path)
    reporter = RichReporter()
    runner = Runner(s, store=store, reporter=reporter, trust_new_host_key=trust_new_host_key)
    try:
        outcome = runner.run()
    finally:
        reporter.stop()
    print_comparison(store, runner.run_id)
    console.print(f"run {outcome.run_id}: {outcome.samples} samples in {store.path}")
    if outcome.failed_cells:
        raise TestbedError(f"run {outcome.run_id}: {len(outcome.failed_cells)} cell(s) failed; first: "
                           f"{outcome.failed_cells[0]}")


HEADLINE_PREFIXES = ("startup_ms", "requests_per_s", "throughput", "transactions_per_s", "latency_p99", "ops_per_s",
                     "ns_per_call", "cell", "instance")  # latency_p99 covers latency_p99_us/_ms/_le_us


def headline(metric: str) -> bool:
    """The metrics the end-of-run table shows; `testbed results` shows every metric."""
    return metric.startswith(HEADLINE_PREFIXES)


def print_comparison(store, run_id: str) -> None:
    from .results.report import fmt, group_samples

    rows = list(store.samples(run_id))
    if not rows:
        return
    groups = group_samples(rows)
    platforms = list(dict.fromkeys(r.platform for r in rows))
    table = Table(title=f"run {run_id}: median [95% CI] (n)", show_lines=False)
    table.add_column("workload / benchmark / metric")
    for p in platforms:
        table.add_column(p, justify="right")
    for g in groups:
        if not headline(g.metric):
            continue
        label = f"{g.workload} {g.benchmark} {g.metric} ({g.unit})" + (f" {g.params}" if g.params else "")
        cells = []
        for p in platforms:
            s = g.per_platform.get(p)
            if s is None:
                cells.append("")
            elif s.n == 0:
                cells.append("[red]failed[/red]")
            else:
                ci = f" [{fmt(s.ci_low)}–{fmt(s.ci_high)}]" if s.ci_low is not None else ""
                flag = "".join(f" [yellow]{f}[/yellow]" for f in g.flags.get(p, []))
                cells.append(f"{fmt(s.median)}{ci} ({s.n}){flag}")
        table.add_row(label, *cells)
    console.print(table)
    print_notes([n for g in groups if headline(g.metric) for n in g.notes])


def print_notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[yellow]warning:[/yellow] {note}", highlight=False)


@cli.command()
@click.argument("run_id", required=False)
@click.option("--store", "store_path", help="SQLite result store.")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--list", "list_runs", is_flag=True, help="List the runs in the store.")
def results(run_id: str | None, store_path: str | None, fmt_name: str, list_runs: bool) -> None:
    """Show a run's results (default: the latest): median, p95, n, 95% CI and CV per platform and metric."""
    from .results.report import comparison_notes, export, fmt, summary_rows

    store = _store(store_path)
    if list_runs:
        t = Table(title=f"runs in {store.path}")
        for col in ("run", "suite", "status", "samples", "testbed rev", "reason"):
            t.add_column(col)
        for r in store.runs():
            t.add_row(r["run_id"], r["suite"], r["status"], str(r["samples"]), r["testbed_rev"], (r["reason"] or "")[:60])
        console.print(t)
        return
    run_id = run_id or store.latest_run()
    if run_id is None or store.run_info(run_id) is None:
        raise TestbedError(f"no run {run_id!r} in {store.path}; see `testbed results --list`" if run_id else
                           f"no runs in {store.path} yet; run `testbed run suites/quickstart.yaml`")
    if fmt_name != "table":
        click.echo(export(store, run_id, fmt_name))
        return
    info = store.run_info(run_id)
    t = Table(title=f"run {run_id} ({info['suite']}, {info['status']}, testbed {info['testbed_rev']})")
    for col in ("workload", "benchmark", "metric", "point", "platform", "median", "p95", "n", "95% CI", "CV", "failed",
                "flags"):
        t.add_column(col, justify="right" if col in ("median", "p95", "n", "CV", "failed") else "left")
    for r in summary_rows(store, run_id):
        ci = f"{fmt(r['ci_low'])}–{fmt(r['ci_high'])}" if r["ci_low"] is not None else "-"
        cv = f"{r['cv'] * 100:.1f}%" if r["cv"] is not None else "-"
        t.add_row(r["workload"], r["benchmark"], f"{r['metric']} ({r['unit']})", r["point"], r["platform"],
                  fmt(r["median"]), fmt(r["p95"]), str(r["n"]), ci, cv, str(r["failed"]) if r["failed"] else "",
                  ", ".join(r["flags"]))
    console.print(t)
    print_notes(comparison_notes(store, run_id))
    if info["status"] != "ok" and info["reason"]:
        console.print(f"[yellow]run status {info['status']}:[/yellow] {info['reason']}")


@cli.command()
@click.argument("host", required=False)
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False, path_type=Path), help="Lab hosts file.")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember an unknown SSH host key.")
def doctor(host: str | None, lab_file: Path | None, fmt_name: str, trust_new_host_key: bool) -> None:
    """Check a host (default: this one): runtimes, tools and versions, KVM, IOMMU, SR-IOV, hugepages."""
    from .hosts.local import LocalHost
    from .provision.doctor import FAIL, run_checks

    if host and host not in ("localhost", "local"):
        from .config.lab import load_lab
        from .hosts.ssh import SshHost

        if lab_file is None:
            raise TestbedError(f"doctor {host}: pass --lab FILE naming the lab hosts file")
        target = SshHost.from_lab(load_lab(lab_file).host(host), trust_new=trust_new_host_key)
    else:
        target = LocalHost()
    checks = run_checks(target)
    if fmt_name == "json":
        click.echo(json.dumps({"host": target.name, "checks": [c.as_dict() for c in checks]}, indent=1))
    else:
        t = Table(title=f"testbed doctor: {target.name}")
        for col in ("check", "status", "detail", "fix"):
            t.add_column(col)
        colour = {"pass": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            t.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix)
        console.print(t)
    if any(c.status == FAIL for c in checks):
        sys.exit(1)


@cli.command()
@click.argument("hosts", nargs=-1)
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Lab hosts file; without it, this machine is provisioned.")
@click.option("--tags", help="Comma-separated playbook tags (roles) to run.")
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember unknown SSH host keys.")
def provision(hosts: tuple[str, ...], lab_file: Path | None, tags: str | None, trust_new_host_key: bool) -> None:
    """Install and configure what testbed needs on lab hosts (default: this machine) with Ansible."""
    from .provision.ansible import provision as run_provision

    result = run_provision(lab_file=lab_file, hosts=list(hosts) or None, tags=tags.split(",") if tags else None,
                           on_event=lambda line: err_console.print(line, style="dim", markup=False, highlight=False),
                           trust_new_host_key=trust_new_host_key)
    console.print(result.summary())


@cli.command()
@click.option("--all", "include_live", is_flag=True, help="Also reclaim resources of runs that still look alive.")
def gc(include_live: bool) -> None:
    """Reclaim what killed runs left behind (namespaces, links, containers, processes, domains)."""
    from . import ledger
    from .net import netns  # noqa: F401  (registers reclaimers)
    from .platforms import oci_runtime  # noqa: F401
    from .hosts import process  # noqa: F401

    _import_optional_reclaimers()
    done = ledger.collect_garbage(include_live_runs=include_live)
    for line in done:
        console.print(line)
    if not done:
        console.print("nothing to reclaim")


def _import_optional_reclaimers() -> None:
    import importlib

    for mod in ("orchestrator.virt.domain", "orchestrator.hosts.ssh", "orchestrator.net.sriov"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


@cli.group()
def images() -> None:
    """Images testbed has built or imported (content-addressed cache)."""


@images.command("list")
def images_list() -> None:
    from .images.cache import ImageCache

    t = Table(title="image cache")
    for col in ("key", "digest", "build s", "path"):
        t.add_column(col)
    for e in ImageCache().entries():
        t.add_row(e["key"], e["digest"][:16], f"{e['build_seconds']:.1f}" if e["build_seconds"] else "-", e["path"])
    console.print(t)


@images.command("import")
@click.argument("kind", type=click.Choice(["osv", "rumprun"]))
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="name cells find it by (default: the directory's / file's name); "
                             "platforms use the workload's name unless they set image:")
@click.option("--blk", "blks", multiple=True, metavar="IMAGE:MOUNTPOINT",
              help="rumprun: a data disk mounted in the guest, e.g. images/data.iso:/data (repeatable)")
def images_import(kind: str, paths: tuple[Path, ...], name: str | None, blks: tuple[str, ...]) -> None:
    """Copy a unikernel image built with its project's own tools into the cache.

    osv: a directory with loader-stripped.elf and usr.img (OSv's build/last), or the two files.
    rumprun: the ELF `rumprun-bake hw_virtio` wrote. See images/osv/README.md, images/rumprun/README.md.
    """
    from .images.imported import BlkSource, import_image

    image = import_image(kind, list(paths), name=name, blk=[BlkSource.parse(b) for b in blks])
    state = "already imported" if image.cache_hit else "imported"
    click.echo(f"{state} {kind} image {image.name} sha256:{image.digest} -> {image.path}")  # one line, unwrapped


@images.command("webroot")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def images_webroot(directory: Path) -> None:
    """Write the document root testbed's nginx expects into DIRECTORY, for an image you build.

    index.html is the page the readiness probe asks for; 4k.bin..128k.bin are what wrk fetches.
    Put DIRECTORY's files where the image's nginx serves from (images/osv/README.md,
    images/rumprun/README.md).
    """
    from .workloads.nginx import write_docroot

    files = write_docroot(directory)
    click.echo(f"wrote {len(files)} files to {directory}: {' '.join(sorted(f.name for f in files))}")

# --- nightly and history (orchestrator/results/nightly.py) ------------------------------------

def _suite_name(suite: str) -> str:
    """A suite file's name (the `name:` inside it), or SUITE itself when it is not a file."""
    path = Path(suite)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        from .config.suite import load_suite

        if not path.is_file():
            raise ConfigError(f"{suite}: no such suite file")
        return load_suite(path).name
    return suite


def _history_store(path: str | None):
    from .results.history import open_store

    return open_store(Path(path) if path else paths.default_store())


def _threshold(ctx, param, values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for v in values:
        metric, sep, frac = v.partition("=")
        try:
            out[metric] = float(frac.rstrip("%")) / (100 if frac.endswith("%") else 1)
        except ValueError:
            sep = ""
        if not sep or not metric:
            raise click.BadParameter(f"{v!r}: expected METRIC=FRACTION, e.g. startup_ms=0.10")
    return out


def _nightly_config(threshold: float, metric_thresholds: dict[str, float], min_nights: int):
    from .results.nightly import NightlyConfig

    return NightlyConfig(threshold=threshold, metric_thresholds=metric_thresholds, min_nights=min_nights)


_nightly_options = [
    click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite)."),
    click.option("--host", help="Only the series measured on this host (a lab host's name, or localhost)."),
    click.option("--threshold", type=click.FloatRange(0, 10), default=0.05, show_default=True,
                 help="Smallest relative change that gets a verdict (0.05 = 5%)."),
    click.option("--metric-threshold", "metric_thresholds", multiple=True, callback=_threshold,
                 metavar="METRIC=FRACTION", help="Threshold for one metric, e.g. startup_ms=0.10 (repeatable)."),
    click.option("--min-nights", type=click.IntRange(3, 1000), default=5, show_default=True,
                 help="Nights of the current configuration needed before any verdict."),
]


def _with(options):
    def wrap(f):
        for o in reversed(options):
            f = o(f)
        return f
    return wrap


@cli.command()
@click.argument("suite")
@_with(_nightly_options)
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Lab hosts file; with --host, the host must be one of it.")
@click.option("--run", "run_id", help="Judge this run instead of the suite's latest.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the night's verdicts as JUnit XML (for Jenkins, GitLab ...).")
@click.option("--no-run", is_flag=True,
              help="Only analyse the runs already in the store (for now always so: running the suite first "
                   "is being added).")
def nightly(suite: str, store_path: str | None, host: str | None, threshold: float,
            metric_thresholds: dict[str, float], min_nights: int, lab_file: Path | None, run_id: str | None,
            junit_file: Path | None, no_run: bool) -> None:
    """Judge the latest night of SUITE (a suite file or a suite name) against its history.

    One observation per night and series (the run's median); change points over the nights of the
    current configuration (PELT, segments of at least 2 nights), confirmed by Student's t on the
    nightly medians and Mann-Whitney U on the raw samples, Benjamini-Hochberg across the night's
    series, and a magnitude threshold. A configuration change (host facts, kernel, tool versions,
    image digests, accelerator, suite hash) starts a new baseline and is reported as such.

    Exit 0: nothing regressed (improvements, configuration changes and "not enough history" are
    reported without failing); 1: one line per regression; 2: usage or input errors.
    See docs/nightly.md.
    """
    from .results.nightly import analyze_nightly, write_junit

    if lab_file is not None and host is not None:
        from .config.lab import load_lab

        load_lab(lab_file).host(host)
    store = _history_store(store_path)
    report = analyze_nightly(store, _suite_name(suite), host=host,
                             config=_nightly_config(threshold, metric_thresholds, min_nights), run_id=run_id)
    for text in report.lines():
        click.echo(text)  # unwrapped: one finding is one line for a script or a CI log
    if junit_file is not None:
        write_junit(report, junit_file)
        click.echo(f"JUnit verdicts written to {junit_file}")
    sys.exit(report.exit_code)


@cli.command()
@click.argument("suite")
@_with(_nightly_options)
@click.option("--metric", help="Only this metric (e.g. requests_per_s).")
@click.option("--platform", help="Only this platform.")
def history(suite: str, store_path: str | None, host: str | None, threshold: float,
            metric_thresholds: dict[str, float], min_nights: int, metric: str | None,
            platform: str | None) -> None:
    """Show SUITE's nightly series: per night the median with its 95% CI, n and CV; configuration
    changes and confirmed change points marked."""
    from .results.nightly import series_history

    store = _history_store(store_path)
    cfg = _nightly_config(threshold, metric_thresholds, min_nights)
    shown = [h for h in series_history(store, _suite_name(suite), host=host, metric=metric, config=cfg)
             if platform is None or h.key.platform == platform]
    if not shown:
        raise ConfigError(f"--platform {platform}: no series of suite {suite!r} on that platform")
    for h in shown:
        print_history(h)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return "".join(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1)) if hi > lo else 0] for v in values)


def print_history(h) -> None:
    import time as _time

    from .results.report import fmt

    marks: dict[int, list[str]] = {}
    for m in h.config_changes + h.change_points:
        marks.setdefault(m.night, []).append(m.text)
    t = Table(title=f"{h.key.label} ({h.unit})  {sparkline([n.median for n in h.nights])}", title_justify="left")
    for col in ("night", "run", "median", "95% CI of median", "n", "CV", "config", "mark"):
        t.add_column(col, justify="right" if col in ("median", "n", "CV") else "left")
    for i, n in enumerate(h.nights):
        ci = "-"
        if n.ci is not None:
            ci = f"{fmt(n.ci[0])}–{fmt(n.ci[1])}" + (f" ({n.ci_level:.0%})" if n.ci_level and n.ci_level < 0.95 else "")
        cv = f"{n.cv * 100:.1f}%" if n.cv is not None else "-"
        failed = f" +{n.failed} failed" if n.failed else ""
        t.add_row(_time.strftime("%Y-%m-%d %H:%M", _time.localtime(n.started)), n.run_id, fmt(n.median), ci,
                  f"{len(n.samples)}{failed}", cv, n.fingerprint.digest[:8], "; ".join(marks.get(i, [])))
    console.print(t)



def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("testbed: interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TestbedError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("testbed: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
