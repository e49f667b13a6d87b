"""Ray job: a bounded Ray Tune search for F, then F trained with the chosen values, published.

The same as `python -m synthrec.jobs.tune` (which needs no checkout):
ray job submit --working-dir . -- python jobs/tune.py --config cfg.yaml
"""

from synthrec.jobs.tune import main

if __name__ == "__main__":
    main()
