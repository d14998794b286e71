"""Dev-only helpers shared by ``benchmarks/`` and ``local_test/`` (never in the image).

* :mod:`o2vtools.process` -- ``container/train`` and ``container/serve`` as processes;
* :mod:`o2vtools.datasets`, :mod:`o2vtools.tree` -- datasets as JSON Lines, SageMaker trees;
* :mod:`o2vtools.results` -- run conditions, markdown tables, the figures' JSON files;
* :mod:`o2vtools.render` -- ``benchmarks/RESULTS.md`` from ``benchmarks/prose/*.md`` and the JSON.
"""
