"""Ray job: train the GAN with Ray Train and publish the model.

The same as `python -m synthrec.jobs.train_gan` (which needs no checkout):
ray job submit --working-dir . -- python jobs/train_gan.py --config cfg.yaml
"""

from synthrec.jobs.train_gan import main

if __name__ == "__main__":
    main()
