"""Ray job: the end-to-end pipeline (GAN -> synthetic data -> report -> recommender).

The same as `python -m synthrec.jobs.pipeline` (which needs no checkout):
ray job submit --working-dir . -- python jobs/pipeline.py --config cfg.yaml
"""

from synthrec.jobs.pipeline import main

if __name__ == "__main__":
    main()
