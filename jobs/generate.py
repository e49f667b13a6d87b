"""Ray job: generate a synthetic dataset with Ray Data and publish it.

The same as `python -m synthrec.jobs.generate` (which needs no checkout):
ray job submit --working-dir . -- python jobs/generate.py --config cfg.yaml
"""

from synthrec.jobs.generate import main

if __name__ == "__main__":
    main()
