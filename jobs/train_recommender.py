"""Ray job: train recommender F (real + λ-weighted synthetic) with Ray Train and publish it.

ray job submit --working-dir . -- python jobs/train_recommender.py --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TrainRecommenderConfig
from synthrec.distributed.recommender_train import run_train_recommender

if __name__ == "__main__":
    job_main(TrainRecommenderConfig, run_train_recommender)
