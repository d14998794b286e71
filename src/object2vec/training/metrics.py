"""The metric lines SageMaker scrapes, exactly as the original Object2Vec prints them.

    #quality_metric: host=algo-1, epoch=3, train cross_entropy <loss>=0.4811
    #quality_metric: host=algo-1, epoch=3, validation accuracy <score>=0.8125
    #quality_metric: host=algo-1, test mean_squared_error <loss>=0.9132
    #progress_metric: host=algo-1, completed 15.0 %
    #throughput_metric: host=algo-1, train throughput=14032.5 records/second
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

KINDS = {"accuracy": "<score>", "cross_entropy": "<loss>", "mean_squared_error": "<loss>",
         "retrieval_mrr": "<score>", "retrieval_accuracy": "<score>"}  # the last two: an extension


@dataclass
class MetricLogger:
    """Writes metric lines for ``host`` to ``logger`` (only the process that owns the job's log)."""

    host: str
    logger: logging.Logger
    enabled: bool = True

    def _emit(self, line: str) -> None:
        if self.enabled:
            self.logger.info(line)

    def quality(self, split: str, metrics: dict[str, float], epoch: int | None = None) -> None:
        """One line per metric; ``epoch`` is omitted for the final test metrics."""
        at = "" if epoch is None else f" epoch={epoch},"
        for name, value in metrics.items():
            self._emit(f"#quality_metric: host={self.host},{at} {split} {name} {KINDS[name]}={value:.6g}")

    def progress(self, percent: float) -> None:
        self._emit(f"#progress_metric: host={self.host}, completed {percent:.1f} %")

    def throughput(self, records_per_second: float) -> None:
        self._emit(f"#throughput_metric: host={self.host}, train throughput={records_per_second:.1f} "
                   f"records/second")
