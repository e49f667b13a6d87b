"""Ray job: search F's λ, synthetic share, temperature and size with Ray Tune; publish F.

python -m synthrec.jobs.tune --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TuneConfig

CONFIG = TuneConfig


def run(cfg: TuneConfig, progress) -> dict:
    from synthrec.distributed.tune import run_tune_command

    return run_tune_command(cfg, progress=progress)


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
