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
from .errors import TestbedError

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
@click.option("--wide", is_flag=True, help="Print the end-of-run table at its full width: no label is wrapped.")
def run(suite: Path, store_path: str | None, trust_new_host_key: bool, check: bool, wide: bool) -> None:
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
    from .results.table import print_run_summary

    print_run_summary(console, store, runner.run_id, wide=wide)
    console.print(f"run {outcome.run_id}: {outcome.samples} samples in {store.path}")
    if outcome.failed_cells:
        raise TestbedError(f"run {outcome.run_id}: {len(outcome.failed_cells)} cell(s) failed; first: "
                           f"{outcome.failed_cells[0]}")


def _existing_store(path: str | None):
    """The store a reading command uses: it must exist (a typo must not create an empty one)."""
    from .results.store import Store

    return Store.open_existing(Path(path) if path else paths.default_store())


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

    store = _existing_store(store_path)
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

    store = _existing_store(store_path)
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

    store = _existing_store(store_path)
    for run_id in run_ids:
        _run_id(store, run_id)
    path = write_report(store, list(run_ids), output)
    click.echo(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(run_ids)} run{'s' if len(run_ids) > 1 else ''})")


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
