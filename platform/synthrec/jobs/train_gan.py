"""Ray job: train the generator (rows or sequences) with Ray Train and publish the model.

python -m synthrec.jobs.train_gan --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TrainGanConfig

CONFIG = TrainGanConfig


def run(cfg: TrainGanConfig, progress) -> dict:
    from synthrec.distributed.train_generator import run_train_generator

    return run_train_generator(cfg, progress=progress)


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
