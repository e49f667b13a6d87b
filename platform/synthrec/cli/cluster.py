"""Cluster commands: `synthrec submit` runs a job (`python -m synthrec.jobs.NAME`) on a Ray
cluster and exits with its status; `synthrec cluster-security-group` prepares cluster.yaml's
security group."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.markup import escape

from synthrec.cli.app import app, console, out
from synthrec.distributed.jobs import available_jobs

SUBMIT_HELP = """Submit a job (python -m synthrec.jobs.JOB) to a Ray cluster, stream its logs,
exit with its status.

Jobs: {jobs}.

Exit status: 0 succeeded, 1 failed, 3 stopped, 2 not submitted (bad input, cluster unreachable,
connection lost). The cluster's job API stays private: reach it with `ray dashboard cluster.yaml`
(then --address http://127.0.0.1:8265). With token auth set RAY_AUTH_MODE=token and keep the
cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN). AWS_ENDPOINT_URL and AWS_REGION travel
with the job; credentials never do (Ray logs a job's environment): the cluster has its own.
"""


@app.command("submit", help=SUBMIT_HELP.format(jobs=", ".join(available_jobs())))
def submit(
    job: str = typer.Argument(..., help="Job name, e.g. simulate or evaluate."),
    address: str = typer.Option(
        ...,
        "--address",
        envvar="RAY_API_SERVER_ADDRESS",
        help="The head node's job API, e.g. http://127.0.0.1:8265.",
    ),
    config: Path = typer.Option(
        None, "--config", help="YAML config for the job; sent to it as JSON."
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="Submit, print the job id and return."),
    env: list[str] = typer.Option(
        None,
        "--env",
        help="Also forward this environment variable (name only; repeatable; not for secrets).",
    ),
    project_dir: Path = typer.Option(
        None,
        "--project-dir",
        help="The synthrec checkout to upload as the working dir (default: found from cwd; "
        "outside a checkout only the installed package travels).",
    ),
) -> None:
    from synthrec.distributed import jobs

    root = Path(project_dir).resolve() if project_dir else jobs.find_project_dir()
    data = jobs.read_config_file(config) if config else {}
    spec = jobs.build_job_spec(job, root, data, env or (), config_source=str(config or "config"))
    console.print(
        "[dim]same as:[/dim] "
        + escape(spec.ray_job_submit_command(jobs.normalize_address(address))),
        highlight=False,
        soft_wrap=True,
    )

    _quiet_ray_client_logs()
    client = jobs.connect(address)
    job_id = jobs.submit_job(client, spec)
    follow = f"ray job logs -f {job_id} --address {client.get_address()}"
    if no_wait:
        out.print(job_id, highlight=False)
        console.print(f"submitted; follow with: {follow}", highlight=False, soft_wrap=True)
        return
    console.print(f"[bold]job {job_id}[/bold] submitted; streaming its logs", highlight=False)

    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    try:
        outcome = jobs.follow_job(client, job_id, write)
    except KeyboardInterrupt:
        console.print(
            f"[yellow]stopped following; job {job_id} keeps running.[/yellow] "
            f"Stop it with: ray job stop {job_id} --address {client.get_address()}",
            highlight=False,
        )
        raise
    if outcome.exit_code == 0:
        console.print(f"[green]job {job_id} succeeded[/green]", highlight=False)
        return
    detail = (
        outcome.message.strip().splitlines()[0].split(", last available logs")[0]
        if outcome.message.strip()
        else ""
    )
    console.print(
        f"[bold red]job {job_id} {outcome.status}[/bold red]: {escape(detail)}",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.log_tail:
        console.print(
            "last log lines:\n  " + "\n  ".join(outcome.log_tail),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    raise typer.Exit(outcome.exit_code)


def _quiet_ray_client_logs() -> None:
    """Ray's job client logs each packaging step at INFO; our own lines say what happens.

    Its modules set their loggers' level when imported, so import them first.
    """
    import ray.job_submission  # noqa: F401

    for name in (
        "ray._private.runtime_env",
        "ray.dashboard.modules.dashboard_sdk",
        "ray.dashboard.modules.job.sdk",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command("cluster-security-group")
def cluster_security_group(
    cluster_yaml: Path = typer.Argument(
        Path("cluster.yaml"), help="The Ray cluster launcher config."
    ),
) -> None:
    """Create cluster.yaml's security group with exactly its rules, before the first `ray up`.

    Ray's launcher adds SSH from 0.0.0.0/0 to a group it creates itself; it leaves an existing
    group alone. Uses your AWS credentials (the ones `ray up` uses).
    """
    from synthrec.distributed import aws

    cluster = aws.load_cluster_config(cluster_yaml)
    group_id, created = aws.ensure_security_group(cluster)
    name = cluster["provider"]["security_group"]["GroupName"]
    if created:
        console.print(
            f"[green]created security group {name} ({group_id})[/green] "
            f"with the rules of {cluster_yaml}",
            highlight=False,
        )
    else:
        console.print(
            f"security group {name} ({group_id}) exists and allows no ingress from anywhere; "
            "left unchanged",
            highlight=False,
        )
    out.print(group_id, highlight=False)
