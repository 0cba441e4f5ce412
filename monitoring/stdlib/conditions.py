"""Declarations of our condition functions: thresholds, trends, forecasts, anomalies.

These extend PromQL for the seed's four alert types. They are declared here so
the checker knows their types; their semantics are documented with each
declaration and implemented per evaluator back end.
"""

from __future__ import annotations

from monitoring.stdlib.registry import REGISTRY, STR, Category, FunctionDecl, M, Param, S, Unit, V

C = Category

ANOMALY_METHODS = ("zscore", "mad", "ewma", "seasonal", "quantile", "ensemble")

REGISTRY.add(
    FunctionDecl("between", (Param("v", V), Param("min", S), Param("max", S)), V, C.CONDITION,
                 "Keeps the samples with min ≤ value ≤ max (a threshold range).",
                 extension=True, unit=Unit.SAME, filter=True, keeps_metric_name=True,
                 example="between(cpu_usage_ratio, 40%, 80%)"),
    FunctionDecl("outside", (Param("v", V), Param("min", S), Param("max", S)), V, C.CONDITION,
                 "Keeps the samples with value < min or value > max.", extension=True,
                 unit=Unit.SAME, filter=True, keeps_metric_name=True,
                 example="outside(temperature_celsius, 5, 35)"),
    FunctionDecl("trend",
                 (Param("v", M),
                  Param("confidence", S, optional=True, default=0.95,
                        doc="confidence that the slope is not zero (0.5-0.999)"),
                  Param("min_change", S, optional=True, default=0.0,
                        doc="smallest absolute change over the window that counts")),
                 V, C.TREND,
                 "Direction of the least-squares slope over the window: 1 (increasing), "
                 "-1 (decreasing) or 0 (flat: not significant at `confidence` by a t-test on "
                 "the slope, or smaller than `min_change`). Compare with the names "
                 "`increasing`, `decreasing` and `flat`.", extension=True,
                 example="trend(disk_used_ratio[6h]) == increasing"),
    FunctionDecl("forecast",
                 (Param("v", M), Param("horizon", S, doc="seconds ahead (`4h` works)"),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds; 0 for a linear forecast")),
                 V, C.TREND,
                 "Forecast value `horizon` seconds ahead: linear least squares, or "
                 "Holt-Winters with additive seasonality when `season` is given.",
                 extension=True, unit=Unit.SAME,
                 example="forecast(disk_used_ratio[1w], 4h, season=1d) > 95%"),
    FunctionDecl("anomaly",
                 (Param("v", M),
                  Param("method", STR, optional=True, default="ensemble", choices=ANOMALY_METHODS),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds for method=\"seasonal\"")),
                 V, C.ANOMALY,
                 "Anomaly score of the newest sample against the window before it, using only "
                 "past data: a robust z-like score where about 3 and above is unusual, "
                 "comparable across methods.", extension=True,
                 example='anomaly(latency_p99{job="api"}[1h], method="mad") > 3.5'),
    FunctionDecl("outlier_score",
                 (Param("v", V),
                  Param("by", STR, optional=True, variadic=True,
                        doc="labels whose values make a peer group (default: one group)")),
                 V, C.ANOMALY,
                 "How far each series lies from its peers at the same step: "
                 "|x - median| / (1.4826 × MAD) across the group's series (1.2533 × the mean "
                 "absolute deviation when the MAD is 0; 0 when all peers are equal). Groups with "
                 "fewer than 3 finite samples, and non-finite samples, give no score.",
                 extension=True,
                 example='outlier_score(avg by (instance, cluster) '
                         '(rate(cpu_seconds_total[5m])), "cluster") > 3'),
)

TREND_DIRECTIONS = {"increasing": 1.0, "decreasing": -1.0, "flat": 0.0}
"""Names that compare with ``trend()``'s result; resolved by the checker."""
