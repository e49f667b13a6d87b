"""Ray job: train recommender F (real + λ-weighted synthetic) with Ray Train and publish it.

python -m synthrec.jobs.train_recommender --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TrainRecommenderConfig

CONFIG = TrainRecommenderConfig


def run(cfg: TrainRecommenderConfig, progress) -> dict:
    from synthrec.distributed.recommender_train import run_train_recommender

    return run_train_recommender(cfg, progress=progress)


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
