"""Ray job: simulate a search log and publish it atomically.

The same as `python -m synthrec.jobs.simulate` (which needs no checkout):
ray job submit --working-dir . -- python jobs/simulate.py --config cfg.yaml
"""

from synthrec.jobs.simulate import main

if __name__ == "__main__":
    main()
