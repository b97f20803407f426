"""``bundle serve REPO``: flags (or their ``BUNDLEGATE_*`` variables) → ``Settings`` → ``server.run``.

Every option comes from ``settings.FLAGS``; click reads the flag, else its environment variable,
and ``--help`` names both. The command refuses to start without API keys unless
``--insecure-no-auth`` is given, which binds to 127.0.0.1 whatever ``--host`` says and prints a
loud warning.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bundlegate.errors import InvalidSetting
from bundlegate.keys import KeyStore
from bundlegate.settings import FLAGS, LOG_LEVELS, Settings, env_name, value_kind
from bundlegate.signing import read_trusted_keys

LOOPBACK = "127.0.0.1"
INSECURE_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  INSECURE: API keys are OFF (--insecure-no-auth). Every model and the admin endpoints answer
!!  anyone who can reach the port. Bound to 127.0.0.1 only. Never run this way in production.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""

_CLICK_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "path": click.Path(path_type=Path),
    "str": str,
}


def check_startable(settings: Settings) -> Settings:
    """Refuse to start without keys (unless insecure); insecure forces loopback. Loads the keys file
    once so a missing or broken file is a one-line error before uvicorn starts."""
    if settings.repository_url is not None:
        from bundlegate.objectstore import open_store

        open_store(settings.repository_url, settings.s3_endpoint_url)  # the extra is installed
    elif not settings.repository.is_dir():
        raise InvalidSetting(
            f"model repository not found: {settings.repository} (build bundles with `bundle pack`)"
        )
    if settings.trusted_keys is not None:
        read_trusted_keys(settings.trusted_keys)  # a broken file, or no 'cryptography': one line now
    if settings.trusted_keys is not None:
        read_trusted_keys(settings.trusted_keys)  # a broken file, or no 'cryptography': one line now
    if settings.keys_file is not None:
        KeyStore(settings.keys_file)
        return settings
    if not settings.insecure_no_auth:
        raise InvalidSetting(
            "no API keys: pass --keys FILE (create one with `bundle keys create`), "
            "or --insecure-no-auth for local development"
        )
    return settings.replace(host=LOOPBACK)


def settings_from(values: dict[str, Any]) -> Settings:
    """``Settings`` from the parsed options; an option neither given nor in the environment keeps
    its default. A repository with a scheme (``s3://bucket/prefix``) is an object store."""
    values = dict(values)
    repository = values.pop("repository", None)
    if repository is not None and "://" in str(repository):
        values["repository_url"] = str(repository)
    elif repository is not None:
        values["repository"] = Path(repository)
    return Settings(**{k: v for k, v in values.items() if v is not None})


def _option(field: str, flag: str, help_text: str) -> Any:
    kind = value_kind(field)
    common: dict[str, Any] = {
        "envvar": env_name(field),
        "show_envvar": True,
        "default": None,
        "help": help_text,
    }
    if kind == "bool":
        if "/" in flag:
            return click.option(flag, field, **common)
        return click.option(flag, field, is_flag=True, **common)
    if field == "log_level":
        return click.option(flag, field, type=click.Choice(LOG_LEVELS), **common)
    return click.option(flag, field, type=_CLICK_TYPES[kind], **common)


@click.argument("repository", required=False, envvar=env_name("repository"))
def serve(**values: Any) -> None:
    """Serve every bundle in REPOSITORY: a directory (default: ./bundles; BUNDLEGATE_REPOSITORY), or
    object storage such as s3://bucket/prefix (or BUNDLEGATE_REPOSITORY_URL), mirrored into
    --cache-dir and polled every --reload-interval-s."""
    from bundlegate.server.run import serve as run_server

    settings = check_startable(settings_from(values))
    if settings.insecure_no_auth and settings.keys_file is None:
        click.echo(INSECURE_BANNER, err=True)
    workers = f"{settings.workers} worker{'s' if settings.workers > 1 else ''}"
    where = settings.repository_url or settings.repository
    scheme = "https" if settings.ssl_certfile is not None else "http"
    click.echo(
        f"bundle serve: {where} on {scheme}://{settings.host}:{settings.port} ({workers})",
        err=True,
    )
    code = run_server(settings)
    if code:
        sys.exit(code)


for _flag in reversed(FLAGS):
    serve = _option(_flag.field, _flag.flag, _flag.help)(serve)


def register(group: click.Group) -> None:
    """Add ``serve`` to the ``bundle`` group."""
    group.command("serve")(serve)
