"""The ``bundle`` command line.

Errors reach the user in one place: ``BundleGroup.invoke`` turns a ``BundlegateError`` (or an ``OSError``
such as a full or unwritable disk) into a ``CliError`` that click prints as ``Error: ...`` on stderr with
exit code 1; click's own usage errors exit 2; Ctrl-C exits 130. No traceback for expected failures,
and ``CliRunner`` sees exactly what a user sees.

Subcommands live in one module per area and register themselves on the group:
``bundle_commands`` (pack, inspect, verify, list), ``keys_commands`` (keys create|list|revoke),
``serve_command`` (serve), ``sign_commands`` (sign, signing-key create). The packer (sklearn,
skl2onnx) is imported only inside ``bundle pack``.
"""

from __future__ import annotations

from typing import IO, Any

import click

from bundlegate import __version__
from bundlegate.cli import bundle_commands, keys_commands, offline_commands, serve_command, sign_commands
from bundlegate.errors import BundlegateError


class CliError(click.ClickException):
    """A ``BundlegateError`` or ``OSError`` as the CLI shows it: one line, then the details."""

    exit_code = 1

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        for d in self.details:
            loc = ".".join(str(p) for p in d.get("loc", []))
            click.echo(f"  {loc}: {d.get('msg', '')}" if loc else f"  {d.get('msg', '')}", err=True)


INTERRUPTED = 130


class BundleGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlegateError as e:
            raise CliError(e.message, e.details) from None
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise CliError(f"{e.strerror or e}{where}") from None
        except KeyboardInterrupt:  # Ctrl-C: the shell's convention, 128 + SIGINT
            click.echo("interrupted", err=True)
            ctx.exit(INTERRUPTED)


@click.group(cls=BundleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bundle")
def cli() -> None:
    """Pack trained models into bundles and serve them."""


bundle_commands.register(cli)
keys_commands.register(cli)
serve_command.register(cli)
sign_commands.register(cli)
offline_commands.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bundle")
