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
from .errors import ConfigError, DataError, NotRunnableError, TestbedError

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


def _run_plan(plan, store, *, wide: bool = False, **runner_options):
    """Run a loaded suite with progress on stderr, then print its table and what could not run; the
    run's outcome for the caller to judge."""
    from .results.table import print_run_summary
    from .runner import Runner

    for note in plan.skipped:
        err_console.print(f"[dim]note: {note}; those cells are skipped[/dim]")
    reporter = RichReporter()
    runner = Runner(plan, store=store, reporter=reporter, **runner_options)
    try:
        outcome = runner.run()
    finally:
        reporter.stop()
    print_run_summary(console, store, runner.run_id, wide=wide)
    console.print(f"run {outcome.run_id}: {outcome.samples} samples in {store.path}")
    for line in outcome.not_runnable:
        console.print(f"[yellow]not runnable here:[/yellow] {line}", highlight=False)
    if outcome.not_runnable and len(outcome.not_runnable) == len(plan.cells):
        raise NotRunnableError(f"nothing could run here: {'; '.join(outcome.not_runnable)}")
    return outcome


def _store(path: str | None, *, create: bool = True):
    """The result store at --store (default $TESTBED_HOME/results.sqlite); create=False: it must exist
    (a reading command must not leave an empty store behind a typo)."""
    from .results.store import Store

    return Store(Path(path) if path else paths.default_store(), create=create)


@cli.command()
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember unknown SSH host keys of lab hosts.")
@click.option("--check", is_flag=True, help="Validate the suite and run every check a run makes first (tools, runsc "
                                           "flags, KVM, images); print the matrix, the samples and an estimate.")
@click.option("--scale", metavar="NAME", help="Merge the suite's scales.NAME overlay (e.g. smoke, paper) first.")
@click.option("--resume", "resume", metavar="RUN",
              help="Continue RUN (interrupted or killed) in place: committed repetitions are skipped.")
@click.option("--wide", is_flag=True, help="Print the end-of-run table at its full width: no label is wrapped.")
@click.option("--allow-overlap", is_flag=True,
              help="Run even while another testbed run is live on the same host and CPUs (refused otherwise); "
                   "every sample then records it and is flagged `overlap`.")
@click.option("--reprobe", is_flag=True, help="Probe KVM again instead of using the cached accelerator verdict.")
def run(suite: Path, store_path: str | None, trust_new_host_key: bool, check: bool, scale: str | None,
        resume: str | None, wide: bool, allow_overlap: bool, reprobe: bool) -> None:
    """Run SUITE (a YAML file in suites/) and print the comparison table."""
    from .plan import load_plan

    if reprobe:
        from .virt.accel import set_reprobe

        set_reprobe()

    plan = load_plan(suite, scale=scale)
    if check:
        _check(plan, trust_new_host_key)
        return
    store = _store(store_path)
    outcome = _run_plan(plan, store, trust_new_host_key=trust_new_host_key, resume=resume,
                        allow_overlap=allow_overlap, wide=wide)
    failed = outcome.failed_cells
    if len(failed) == 1:
        raise TestbedError(f"run {outcome.run_id}: 1 cell failed: {failed[0]}")
    if failed:  # every failed cell with its reason, one line each, then the count
        raise TestbedError("\n".join([*failed, f"run {outcome.run_id}: {len(failed)} cells failed"]))


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _check(plan, trust_new_host_key: bool) -> None:
    """`run --check`: the matrix with its samples and estimate, then every check a run makes first."""
    from .ledger import Ledger
    from .placement import host_named, resolve
    from .preflight import check_plan, make_platforms
    from .runner import new_run_id

    from .results.table import _print, columns_table

    scale = f", scale {plan.scale}" if plan.scale else ""
    numeric = {"points", "reps", "kept runs", "with warm-ups"}
    rows = [[c.platform, c.workload, c.benchmark, str(len(plan.benchmarks[c.benchmark].points())),
             str(plan.repetitions(plan.benchmarks[c.benchmark])), str(plan.kept_runs(c)), str(plan.trials(c))]
            for c in plan.cells]
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    say(f"{plan.path}: {len(plan.cells)} cells{scale}, digest {plan.digest[:12]}")
    _print(console, columns_table("", ["platform", "workload", "benchmark", "points", "reps", "kept runs",
                                       "with warm-ups"], rows, numeric, width=console.width, wide=False))

    for note in plan.skipped:
        say(f"note: {note}; those cells are skipped")
    kept = sum(plan.kept_runs(c) for c in plan.cells)
    samples = sum(plan.kept_runs(c) * max(1, len(plan.benchmarks[c.benchmark].metrics)) for c in plan.cells)
    say(f"{kept} kept launches or tool runs, about {samples} samples (each run stores its metrics)")
    pm = plan.model.placement
    server = host_named(pm.server_host, plan.model.lab.lab_file, plan.path, trust_new_host_key)
    client = host_named(pm.client_host, plan.model.lab.lab_file, plan.path, trust_new_host_key)
    placement = resolve(pm, server, client)
    # What the checks create (runsc's KVM probe) is owned like a run's; a check holds no CPU, so a run
    # starting meanwhile does not see it as a run on its CPUs.
    idle = "run --check (no CPUs)"
    ledger = Ledger(f"check-{new_run_id()}", info={"suite": plan.name, "server_host": idle, "server_cpus": None,
                                                   "client_host": idle, "client_cpus": None})
    platforms = make_platforms(plan, placement, server, ledger, paths.runs_dir() / "check")
    try:
        result = check_plan(plan, placement, platforms, local_lab=server.is_local)
    finally:
        for p in platforms.values():
            p.close()
        ledger.close()
    for cell, why in result.not_runnable.items():
        say(f"[yellow]not runnable here:[/yellow] {cell}: {why}")
    if len(result.not_runnable) == len(plan.cells):
        raise NotRunnableError(f"nothing in {plan.path} could run here")
    estimate = ", ".join(f"{_minutes(v)}{f' with guests under {a.upper()}' if a else ''}"
                         for a, v in result.estimate_s.items())
    say(f"checks passed; estimated duration: {estimate} (image builds on a cold cache not included)")


def _run_id(store, run_id: str | None) -> str:
    run_id = run_id or store.latest_run()
    if run_id is None:
        raise TestbedError(f"no runs in {store.path} yet; run `testbed run suites/quickstart.yaml`")
    if store.run_info(run_id) is None:
        raise TestbedError(f"no run {run_id!r} in {store.path}; see `testbed results --list`")
    return run_id


@cli.command()
@click.argument("run_id", required=False)
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table: every metric per platform; json/csv: every sample with its provenance (or the summary "
                   "with --summary).")
@click.option("--summary", "summary_only", is_flag=True, help="With --format json/csv: export the summary table "
                                                              "(median, CI, flags per platform) instead of the samples.")
@click.option("--list", "list_runs", is_flag=True, help="List the runs in the store: date, duration, status, host, "
                                                        "samples.")
@click.option("--wide", is_flag=True, help="Print tables at their full width: no label is wrapped.")
def results(run_id: str | None, store_path: str | None, fmt_name: str, summary_only: bool, list_runs: bool,
            wide: bool) -> None:
    """Show a run's results (default: the latest): per platform and metric the median, the 95% CI of the
    median (none below n=5), the honest tail (p95 from n=20, else max), CV, failures and flags; then the
    rankings (Mann-Whitney U, Holm-adjusted) and every flag with its reason."""
    from .results.export import export_samples, export_summary, records_csv
    from .results.table import print_results, print_runs, run_records

    store = _store(store_path, create=False)
    store.reconcile_killed()  # a SIGKILLed run is `killed`, not `running` forever
    if list_runs:
        if fmt_name == "table":
            print_runs(console, store, wide=wide)
        else:
            click.echo(json.dumps(run_records(store), indent=1, default=str) if fmt_name == "json" else
                       records_csv(run_records(store)))
        return
    run_id = _run_id(store, run_id)
    if fmt_name != "table":
        click.echo(export_summary(store, run_id, fmt_name) if summary_only else export_samples(store, run_id, fmt_name))
        return
    print_results(console, store, run_id, wide=wide)
    status = store.run_info(run_id)["status"]
    if status in ("killed", "interrupted"):
        console.print(f"[yellow]run {run_id} is incomplete ({status}): these are the samples committed "
                      f"before it stopped[/yellow]", highlight=False)
    elif status == "running":
        console.print(f"[yellow]run {run_id} is still running: these are the samples committed so far[/yellow]",
                      highlight=False)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("--force", is_flag=True, help="Compare runs of different suites anyway.")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--wide", is_flag=True, help="Print the table at its full width: no label is wrapped.")
def compare(run_a: str, run_b: str, store_path: str | None, force: bool, fmt_name: str, wide: bool) -> None:
    """Compare RUN_B against RUN_A: per metric, point and platform both medians, the change in % with its
    bootstrap 95% CI, the Mann-Whitney U p (Benjamini-Hochberg-adjusted over all rows) and a verdict
    (faster, slower, no significant change); the provenance differences first."""
    from .results.compare import compare_runs
    from .results.export import records_csv
    from .results.table import print_comparison

    store = _store(store_path, create=False)
    cmp = compare_runs(store, run_a, run_b, force=force)
    if fmt_name == "json":
        click.echo(json.dumps(cmp.as_dict(), indent=1, default=str))
    elif fmt_name == "csv":
        click.echo(records_csv([r.as_dict() for r in cmp.rows]))
    else:
        print_comparison(console, cmp, wide=wide)


@cli.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN [RUN ...]")
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
def report(run_ids: tuple[str, ...], store_path: str | None, output: Path) -> None:
    """Write one self-contained HTML file for the runs: per suite the figures (inline SVG), every flag,
    the rankings, published numbers and claim verdicts when the suite declares them, and the full provenance."""
    from .results.html import write_report

    store = _store(store_path, create=False)
    papers = {}
    for run_id in run_ids:
        _run_id(store, run_id)
        paper, note = _paper_suite(store, run_id)
        if paper is not None:
            papers[run_id] = paper
        elif note:
            err_console.print(f"note: {note}", highlight=False)
    path = write_report(store, list(run_ids), output, papers=papers)
    click.echo(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(run_ids)} run{'s' if len(run_ids) > 1 else ''})")


def _paper_suite(store, run_id: str):
    """The paper blocks a run is judged with: those it recorded, else its suite file if unchanged.
    Returns (PaperSuite or None, a note on why there is none)."""
    from pydantic import ValidationError

    from .config.papers import PaperSuite

    info = store.run_info(run_id)
    try:
        recorded = PaperSuite.from_provenance(info["provenance"] or {})
    except ValidationError as exc:
        raise ConfigError(f"run {run_id}: the claims it recorded no longer validate ({exc.errors()[0]['msg']}); "
                          f"rerun its suite") from None
    if recorded is not None or "paper_suite" in (info["provenance"] or {}):
        return recorded, None
    path = Path(info["suite_path"])  # a run from before runs recorded their claims
    if not path.is_file():
        return None, f"run {run_id} recorded no claims and its suite file {path} is gone"
    from .digest import sha256_file

    if sha256_file(path) != info["suite_hash"]:
        return None, (f"run {run_id} recorded no claims and {path} changed since (suite hash "
                      f"{info['suite_hash'][:12]} -> {sha256_file(path)[:12]}); its claims are not judged")
    from .plan import load_plan

    return PaperSuite.of(load_plan(path).model), None


@cli.command()
@click.argument("run_id", required=False)
@click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite).")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json"]), default="table", show_default=True)
def claims(run_id: str | None, store_path: str | None, fmt_name: str) -> None:
    """The verdict on each claim of RUN's paper suite (default: the latest run): reproduced, not reproduced,
    inconclusive (with the repetitions that would decide it) or not comparable (with the reason), and the
    numbers and test that decided; then the published numbers beside ours."""
    from .results.claims import evaluate_claims, published_rows, verdict_counts
    from .results.summary import summarize_rows

    store = _store(store_path, create=False)
    run_id = _run_id(store, run_id)
    paper, note = _paper_suite(store, run_id)
    if paper is None:
        raise TestbedError(note or f"run {run_id} ({store.run_info(run_id)['suite']}) is not a paper suite: "
                                   f"its suite declares no claims")
    rows = list(store.samples(run_id))
    groups = summarize_rows(rows)
    verdicts = evaluate_claims(paper, rows, groups)
    published = published_rows(paper.published, groups)
    if fmt_name == "json":
        click.echo(json.dumps({"run": run_id, "paper": paper.paper.model_dump(mode="json") if paper.paper else None,
                               "verdicts": [v.as_dict() for v in verdicts], "counts": verdict_counts(verdicts),
                               "published": [r.as_dict() for r in published]}, indent=1, default=str))
        return
    from .results.claims_table import print_claims

    print_claims(console, run_id, paper, verdicts, published)


@cli.command()
@click.argument("host", required=False)
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False, path_type=Path), help="Lab hosts file.")
@click.option("--format", "fmt_name", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember an unknown SSH host key.")
@click.option("--reprobe", is_flag=True, help="Probe KVM again instead of using the cached accelerator verdict.")
def doctor(host: str | None, lab_file: Path | None, fmt_name: str, trust_new_host_key: bool, reprobe: bool) -> None:
    """Check a host (default: this one): runtimes, tools and versions, KVM, IOMMU, SR-IOV, hugepages.
    The accelerator verdict comes from the probe cache when this boot already probed (--reprobe)."""
    from .hosts.base import Host
    from .hosts.local import LocalHost
    from .provision.doctor import FAIL, run_checks

    if reprobe:
        from .virt.accel import set_reprobe

        set_reprobe()

    if host and host not in ("localhost", "local"):
        from .config.lab import load_lab
        from .hosts.ssh import SshHost

        if lab_file is None:
            raise TestbedError(f"doctor {host}: pass --lab FILE naming the lab hosts file")
        ssh = SshHost.from_lab(load_lab(lab_file).host(host), trust_new=trust_new_host_key)
        # One connection attempt up front: a refused host key (or an unreachable host) is one line and
        # exit code, not the same refusal retried by every check and printed as a table.
        ssh.connect()
        target: Host = ssh
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
            t.add_row(c.name, f"[{colour[str(c.status)]}]{c.status}[/]", c.detail, c.fix)
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
@click.argument("hosts", nargs=-1)
@click.option("--lab", "lab_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Lab hosts file (which hosts, how to reach them, their nightly store).")
@click.option("--store", "store_path", help="The controller's result store to merge into (default: $TESTBED_HOME/"
                                            "results.sqlite).")
@click.option("--remote-store", help="The store's path on each host (default: the host's nightly.store, else "
                                     "/var/lib/testbed/results.sqlite).")
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember unknown SSH host keys.")
def collect(hosts: tuple[str, ...], lab_file: Path, store_path: str | None, remote_store: str | None,
            trust_new_host_key: bool) -> None:
    """Copy each lab host's result store over SSH (checksummed) and merge its finished runs into this
    store, as RUN@HOST; collecting twice adds nothing. compare, history and report work on them."""
    from .config.lab import load_lab
    from .hosts.ssh import SshHost
    from .results.collect import DEFAULT_REMOTE_STORE, collect as collect_host

    lab = load_lab(lab_file)
    target = _store(store_path)
    failures = []
    for cfg in lab.select(list(hosts) or None):
        schedule = cfg.nightly_schedule  # None when the host runs no nightly suites; its store may still be set
        configured = (schedule.store if schedule is not None else None) or (cfg.nightly.store if cfg.nightly else None) \
            or (lab.model.nightly.store if lab.model.nightly else None)
        path = remote_store or configured or DEFAULT_REMOTE_STORE
        with SshHost.from_lab(cfg, trust_new=trust_new_host_key) as host:
            try:
                console.print(collect_host(host, path, target).line(), highlight=False)
            except TestbedError as exc:
                failures.append(str(exc))
                err_console.print(f"[red]{exc}[/red]", highlight=False)
    if failures:
        raise TestbedError(f"collect: {len(failures)} host(s) not collected; first: {failures[0]}")


@cli.command()
@click.option("--all", "include_live", is_flag=True, help="Also reclaim resources of runs that still look alive.")
@click.option("--runs-older-than", "runs_older_than", metavar="DURATION",
              help="Also remove per-run scratch directories ($TESTBED_HOME/runs/ID) untouched for DURATION "
                   "(e.g. 7d, 12h, 30m) whose run is not live.")
@click.option("--store", "store_path",
              help="Result store whose killed runs are marked (default: $TESTBED_HOME/results.sqlite).")
def gc(include_live: bool, runs_older_than: str | None, store_path: str | None) -> None:
    """Reclaim what killed runs left behind (namespaces, links, containers, processes, domains, half
    image copies), here and on lab hosts (reconnecting with the lab file's host keys), and mark runs
    whose process is gone `killed` in the result store."""
    from . import ledger

    older_than = None
    if runs_older_than is not None:
        try:
            older_than = ledger.parse_duration(runs_older_than)
        except ValueError as exc:
            raise ConfigError(f"--runs-older-than: {exc}") from None
    done: list[str] = []
    store = None
    if store_path or paths.default_store().is_file():
        store = _store(store_path, create=False)
        # Before collect_garbage: it deletes the ledgers that tell the owner of runs from older stores.
        done += [f"run {r}: marked killed (its process is gone)" for r in store.reconcile_killed()]
    done += ledger.collect_garbage(include_live_runs=include_live)
    if older_than is not None:
        live = {r["run_id"] for r in store.runs() if r["status"] == "running"} if store else set()
        done += ledger.remove_old_run_dirs(older_than, live_runs=live)
    for line in done:
        console.print(line, highlight=False, markup=False)
    if not done:
        console.print("nothing to reclaim")


@cli.group()
def sriov() -> None:
    """SR-IOV on this host: PFs, VFs, leases, and why SR-IOV cannot be used here (docs/sriov.md)."""


@sriov.command("status")
def sriov_status() -> None:
    """PFs and VFs with their drivers, IOMMU groups and leases, then the reasons SR-IOV is unusable."""
    from .net.sriov import host_sriov, sriov_problems
    from .net.sriov.pool import vf_states

    host = host_sriov()
    t = Table(title="SR-IOV")
    for col in ("pf", "vf", "pci", "driver", "netdev", "numa", "iommu group", "lease"):
        t.add_column(col)
    for s in vf_states(host):
        lease = s.holder or (f"[yellow]stale: {s.stale}[/]" if s.stale else "free")
        t.add_row(s.pf.name, str(s.vf.index), s.vf.pci_address, s.vf.driver or "-", s.vf.netdev or "-",
                  str(s.vf.numa_node if s.vf.numa_node is not None else "-"), str(s.vf.iommu_group or "-"), lease)
    console.print(t)
    for p in sriov_problems(host):
        console.print(f"[yellow]not usable:[/yellow] {p.what}; fix: {p.fix}", markup=True, highlight=False)


@sriov.command("vfs")
@click.argument("pf")
@click.argument("count", type=click.IntRange(0, 256))
@click.option("--autoprobe/--no-autoprobe", default=None,
              help="Write sriov_drivers_autoprobe first (--no-autoprobe: new VFs stay off the host's VF driver).")
def sriov_vfs(pf: str, count: int, autoprobe: bool | None) -> None:
    """Set PF's VF count now (0 -> COUNT); refused while any of its VFs is leased."""
    from .net.sriov import LocalSystem, host_sriov, set_num_vfs
    from .net.sriov.pool import vf_states

    host = host_sriov()
    match = next((p for p in host.pfs if pf in (p.name, p.pci_address)), None)
    if match is None:
        pfs = ", ".join(p.name for p in host.pfs) or "none"
        raise TestbedError(f"sriov vfs: {pf} is not an SR-IOV PF here (PFs: {pfs})")
    changed = set_num_vfs(LocalSystem(), match.pci_address, count, autoprobe=autoprobe,
                          busy=lambda: [f"{s.vf.pci_address} by {s.holder}" for s in vf_states(host)
                                        if s.pf.pci_address == match.pci_address and s.holder])
    console.print(f"{match.name}: {count} VFs" + ("" if changed else " (unchanged)"))


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
@click.argument("kind", metavar="KIND")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="name cells find it by (default: the directory's / file's name); "
                             "platforms use the workload's name unless they set image:")
@click.option("--blk", "blks", multiple=True, metavar="IMAGE:MOUNTPOINT",
              help="rumprun: a data disk mounted in the guest, e.g. images/data.iso:/data (repeatable)")
def images_import(kind: str, paths: tuple[Path, ...], name: str | None, blks: tuple[str, ...]) -> None:
    """Copy a unikernel image (KIND: osv or rumprun) built with its project's own tools into the cache.

    osv: a directory with loader-stripped.elf and usr.img (OSv's build/last), or the two files.
    rumprun: the ELF `rumprun-bake hw_virtio` wrote. See images/osv/README.md, images/rumprun/README.md.
    """
    from .images.imported import BlkSource, import_image
    from .platforms.base import Platform

    kinds = sorted({k for _, cls in Platform.registry.items() if (k := getattr(cls, "image_kind", None))})
    if kind not in kinds:
        raise TestbedError(f"images import: kind {kind!r} is not one of {', '.join(kinds)} (the platforms that boot "
                           f"imported images)")

    def warn(line: str) -> None:
        sys.stderr.write(f"testbed: warning: {line}\n")

    image = import_image(kind, list(paths), name=name, blk=[BlkSource.parse(b) for b in blks], warn=warn)
    state = "already imported" if image.cache_hit else "imported"
    click.echo(f"{state} {kind} image {image.name} sha256:{image.digest} -> {image.path}")  # one line, unwrapped
    found = ", ".join(f"{b} {v}" for b, v in sorted(image.app_versions.items())) or "none found"
    click.echo(f"  application version in the image: {found}")


@images.command("remove")
@click.argument("ref", metavar="NAME|DIGEST")
@click.option("--kind", type=click.Choice(["osv", "rumprun"]), help="Only imports of this kind.")
def images_remove(ref: str, kind: str | None) -> None:
    """Remove images from the cache: every import named NAME, or the entry with this digest
    (at least 8 hex digits) or cache key (`testbed images list`). Built images are rebuilt when next needed."""
    from .images.imported import remove_images

    for line in remove_images(ref, kind=kind):
        click.echo(line)


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

def _suite_plan(suite: str):
    """SUITE's plan when it is a suite file (loaded once per command), None when it is a suite's name."""
    path = Path(suite)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        from .plan import load_plan

        if not path.is_file():
            raise ConfigError(f"{suite}: no such suite file")
        return load_plan(path)
    return None


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


def _nightly_config(threshold: float | None, metric_thresholds: dict[str, float], min_nights: int | None,
                    plan=None):
    """The command line's settings over the suite file's `nightly:` block over the defaults."""
    from .results.nightly import NightlyConfig

    settings = plan.model.nightly if plan is not None else None
    default = NightlyConfig()
    return NightlyConfig(
        threshold=threshold if threshold is not None else (settings.threshold if settings and settings.threshold
                                                          else default.threshold),
        metric_thresholds={**(settings.metric_thresholds if settings else {}), **metric_thresholds},
        min_nights=min_nights if min_nights is not None else (settings.min_nights if settings and settings.min_nights
                                                             else default.min_nights))


_nightly_options = [
    click.option("--store", "store_path", help="SQLite result store (default: $TESTBED_HOME/results.sqlite)."),
    click.option("--host", help="Only the series measured on this host (a lab host's name, or localhost)."),
    click.option("--threshold", type=click.FloatRange(0, 10), default=None,
                 help="Smallest relative change that gets a verdict (default: the suite's nightly.threshold, "
                      "else 0.05 = 5%)."),
    click.option("--metric-threshold", "metric_thresholds", multiple=True, callback=_threshold,
                 metavar="METRIC=FRACTION", help="Threshold for one metric, e.g. startup_ms=0.10 (repeatable)."),
    click.option("--min-nights", type=click.IntRange(3, 1000), default=None,
                 help="Nights of the current configuration needed before any verdict (default: the suite's "
                      "nightly.min_nights, else 5)."),
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
@click.option("--no-run", is_flag=True, help="Only judge the runs already in the store (SUITE may be a name).")
@click.option("--trust-new-host-key", is_flag=True, help="Accept and remember unknown SSH host keys of lab hosts.")
def nightly(suite: str, store_path: str | None, host: str | None, threshold: float,
            metric_thresholds: dict[str, float], min_nights: int, lab_file: Path | None, run_id: str | None,
            junit_file: Path | None, no_run: bool, trust_new_host_key: bool) -> None:
    """Run SUITE (a suite file) as `testbed run` does, then judge tonight against its history.

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
    plan = _suite_plan(suite)  # a bad suite: one line, first
    config = _nightly_config(threshold, metric_thresholds, min_nights, plan)
    name = plan.name if plan is not None else suite
    if not no_run and run_id is None:
        if plan is None:
            raise ConfigError(f"{suite}: no such suite file; pass the suite's file to run it, or --no-run to judge "
                              f"the runs of suite {suite!r} already in the store")
        # A night whose cells failed is still a night (its failures are in the verdicts' context).
        run_id = _run_plan(plan, _store(store_path), trust_new_host_key=trust_new_host_key).run_id
    store = _history_store(store_path)
    report = analyze_nightly(store, name, host=host, config=config, run_id=run_id)
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
    plan = _suite_plan(suite)
    cfg = _nightly_config(threshold, metric_thresholds, min_nights, plan)
    shown = [h for h in series_history(store, plan.name if plan is not None else suite, host=host, metric=metric,
                                       config=cfg)
             if platform is None or h.key.platform == platform]
    if not shown:
        if platform is None:  # every series of the suite is failed or not-runnable samples only
            raise DataError(f"suite {suite!r}: no night with a measured value in {store.path}")
        raise ConfigError(f"--platform {platform}: no series of suite {suite!r} on that platform")
    for h in shown:
        print_history(h)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return "".join(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1)) if hi > lo else 0] for v in values)


def print_history(h) -> None:
    import time as _time

    from .results.numbers import fmt

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
