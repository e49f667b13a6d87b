"""Ray job: one refresh of the continuous loop (schedule it with cron or a Kubernetes CronJob).

python -m synthrec.jobs.refresh --config refresh.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import RefreshConfig

CONFIG = RefreshConfig


def run(cfg: RefreshConfig, progress) -> dict:
    from synthrec.refresh import run_refresh

    return run_refresh(cfg, progress=lambda kind, **event: progress({kind: event}))


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
