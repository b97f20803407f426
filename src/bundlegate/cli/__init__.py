"""The ``bundle`` command line. Errors reach the user in one place: ``main`` prints a ``BundlegateError``
as one line on stderr and exits 1; click's own usage errors exit 2. No traceback for expected failures.

Subcommands live in one module per area and register themselves on the group:
``bundle_commands`` (pack, inspect, verify, list), ``keys_commands`` (keys create|list|revoke),
``serve_command`` (serve). The packer (sklearn, skl2onnx) is imported only inside ``bundle pack``.
"""

from __future__ import annotations

import sys

import click

from bundlegate import __version__
from bundlegate.cli import bundle_commands, keys_commands, serve_command
from bundlegate.errors import BundlegateError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundle")
def cli() -> None:
    """Pack trained models into bundles and serve them."""


bundle_commands.register(cli)
keys_commands.register(cli)
serve_command.register(cli)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the one exit path for expected errors."""
    try:
        cli.main(args=argv, prog_name="bundle", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BundlegateError as e:
        click.echo(f"error: {e.message}", err=True)
        for d in e.details:
            loc = ".".join(str(p) for p in d.get("loc", []))
            click.echo(f"  {loc}: {d.get('msg', '')}" if loc else f"  {d.get('msg', '')}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
