"""Command line: `python run_bench.py --help` lists the commands, one module per group.

    python run_bench.py --help

`train` (one-process training, split report, loopback pairs, wire bench, totals),
`bench` (run, list, plot, check, baseline), `emulation` (doctor, clean), `predict`,
`report` (one HTML page per run, or two runs compared), `twohosts` (export a case to two
real machines, collect their files into a run).
Every user-fixable problem is a HarnessError, printed as one line `error: ...` with exit 2.
"""
from __future__ import annotations

import click

from harness.cli import bench, emulation, predict, report, train, twohosts
from harness.errors import HarnessError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """hierbench: benchmark hierarchical edge-cloud training against its baselines."""


for _group in (train, bench, emulation, predict, report, twohosts):
    for _command in _group.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning HarnessError into one line and exit code 2."""
    try:
        rc = cli.main(args=argv, prog_name="run_bench.py", standalone_mode=False)
    except HarnessError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return 130
    return rc if isinstance(rc, int) else 0
