"""Ray job: train recommender F with Ray Train and publish it.

The same as `python -m synthrec.jobs.train_recommender` (which needs no checkout):
ray job submit --working-dir . -- python jobs/train_recommender.py --config cfg.yaml
"""

from synthrec.jobs.train_recommender import main

if __name__ == "__main__":
    main()
