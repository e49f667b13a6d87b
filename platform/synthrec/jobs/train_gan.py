"""Ray job: train the GAN with Ray Train and publish the model.

python -m synthrec.jobs.train_gan --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TrainGanConfig

CONFIG = TrainGanConfig


def run(cfg: TrainGanConfig, progress) -> dict:
    from synthrec.distributed.gan_train import run_train_gan

    return run_train_gan(cfg, progress=progress)


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
