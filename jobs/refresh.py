"""Ray job: one refresh of the continuous loop on a new partition of real events.

The same as `python -m synthrec.jobs.refresh` (which needs no checkout):
ray job submit --working-dir . -- python jobs/refresh.py --config refresh.yaml
"""

from synthrec.jobs.refresh import main

if __name__ == "__main__":
    main()
