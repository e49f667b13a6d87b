"""`synthrec` commands: serve."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import typer

from synthrec.cli.app import app, config_from_flags, console, old_flag, renamed
from synthrec.config import ServeConfig


@app.command("serve")
def serve_command(
    generator_uri: str | None = typer.Option(
        None, "--generator-uri", help="Generator model directory (path or s3:// URI)."
    ),
    recommender_uri: str | None = typer.Option(
        None, "--recommender-uri", help="Recommender model directory (path or s3://)."
    ),
    host: str | None = typer.Option(
        None,
        "--host",
        help="Bind address (default 127.0.0.1: loopback only). Any other address needs an API "
        "key (SYNTHREC_API_KEY or api_key_file) or --insecure.",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Serve a non-loopback --host without an API key (not for production).",
    ),
    port: int | None = typer.Option(None, "--port", help="HTTP port (default 8000)."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with ServeConfig keys (flags win)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (default: start a local Ray)."
    ),
    no_access_log: bool = typer.Option(False, "--no-access-log", help="Turn off per-request logs."),
    ingress: str | None = typer.Option(
        None,
        "--ingress",
        help="haproxy (default; fastest) or proxy (Serve's Python "
        "proxy). Only for a Ray this command starts.",
    ),
    follow: str | None = typer.Option(
        None,
        "--follow",
        help="Serve a registry alias (e.g. synthrec-recommender@production) instead of "
        "--recommender-uri, and roll to each version a promotion or rollback points it at.",
    ),
    registry_root_uri: str | None = typer.Option(
        None, "--registry-root-uri", help="Root of the refresh loop whose registry --follow reads."
    ),
    follow_interval: float = typer.Option(
        10.0, "--follow-interval", help="Seconds between looks at the registry."
    ),
    generator: str | None = old_flag("--generator"),
    recommender: str | None = old_flag("--recommender"),
) -> None:
    """Serve /v1/synthetic, /v1/recommendations, /v1/models and /healthz until interrupted.

    Set SYNTHREC_API_KEY (or api_key_file in --config) to require `Authorization: Bearer <key>`;
    without one, only a loopback --host is served (or pass --insecure).
    """
    cfg = config_from_flags(
        ServeConfig,
        config,
        {
            "generator_uri": renamed(generator_uri, generator, "--generator-uri", "--generator"),
            "recommender_uri": renamed(
                recommender_uri, recommender, "--recommender-uri", "--recommender"
            ),
            "host": host,
            "port": port,
            "ray_address": address,
            "access_log": False if no_access_log else None,
            "ingress": ingress,
            "insecure": True if insecure else None,
        },
    )
    serving = None
    if follow:
        from synthrec.serving.follow import resolve_recommender

        if not registry_root_uri or cfg.recommender_uri:
            raise typer.BadParameter(
                "--follow needs --registry-root-uri and replaces --recommender-uri",
                param_hint="--follow",
            )
        serving = resolve_recommender(follow, registry_root_uri, storage=cfg.storage)
        cfg = cfg.model_copy(update={"recommender_uri": serving.model_uri})
    if not cfg.generator_uri and not cfg.recommender_uri:
        raise typer.BadParameter(
            "give --generator-uri, --recommender-uri or both", param_hint="--generator-uri"
        )
    from synthrec.serving.app import deploy  # imports Ray: only when serving
    from synthrec.serving.auth import read_api_key

    console.print("[bold]starting[/bold] Ray Serve (model directories load once per replica) ...")
    url = deploy(cfg)
    auth = read_api_key(cfg)
    console.print(
        f"serving on [bold]{url}[/bold]  docs: {url}/docs  "
        f"auth: {'on (' + auth.source + ')' if auth.enabled else 'off'}  ingress: {cfg.ingress}  "
        f"generator: {cfg.generator_uri or '-'}  recommender: {cfg.recommender_uri or '-'}"
    )
    if serving is not None:
        from synthrec.serving.follow import AliasFollower

        console.print(f"following {follow}: version {serving.version}", highlight=False)
        AliasFollower(
            cfg,
            follow,
            registry_root_uri,
            serving,
            interval_s=follow_interval,
            on_roll=lambda v: console.print(f"rolled to version {v.version}", highlight=False),
        ).start()
    console.print("press Ctrl-C to stop")
    # Ctrl-C and `kill` stop Serve cleanly; a background shell job starts with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    finally:
        from ray import serve

        console.print("stopping Serve ...")
        serve.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
