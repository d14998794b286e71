#!/usr/bin/env python3
"""Object2Vec JSON Lines built at run time from public datasets shipped inside installed packages.

    python local_test/datasets.py movielens --out /tmp/ml100k      # train/validation JSON Lines
    python local_test/datasets.py news --out /tmp/news             # + test split and vocab.json

The loaders live in ``tools/o2vtools/datasets.py`` (dev tooling shared with ``benchmarks/``,
installed into ``.venv`` by ``make venv``); this file keeps the command line and the
``import datasets`` of the scripts here.
"""

import sys

from o2vtools.datasets import *  # noqa: F403
from o2vtools.datasets import main

if __name__ == "__main__":
    sys.exit(main())
