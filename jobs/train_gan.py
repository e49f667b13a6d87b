"""Ray job: train the GAN with Ray Train and publish the model.

ray job submit --working-dir . -- python jobs/train_gan.py --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import TrainGanConfig
from synthrec.distributed.gan_train import run_train_gan

if __name__ == "__main__":
    job_main(TrainGanConfig, run_train_gan)
