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
                        doc="confidence that the slope is not zero, in [0, 1) (0.95: p <= 0.05)"),
                  Param("min_change", S, optional=True, default=0.0,
                        doc="smallest change of the fitted line over the window, in the series' "
                            "unit (`10%` of a ratio metric is 0.10)"),
                  Param("min_relative_change", S, optional=True, default=0.0,
                        doc="smallest change of the fitted line over the window relative to "
                            "its value at the window's start (0.1: 10 %)")),
                 V, C.TREND,
                 "Direction of the least-squares slope over the window: 1 (increasing), "
                 "-1 (decreasing) or 0 (flat: not significant at `confidence` by a t-test on "
                 "the slope with n - 2 degrees of freedom, or a change of the fitted line over "
                 "the range below `min_change` or `min_relative_change`). Fewer than 3 samples "
                 "give no result; a constant window is flat; a NaN or infinite sample gives NaN. "
                 "Compare with the names `increasing`, `decreasing` and `flat`. "
                 "See docs/trend-methods.md.", extension=True,
                 example="trend(disk_used_ratio[6h], 0.99, min_change=5%) == increasing"),
    FunctionDecl("forecast",
                 (Param("v", M), Param("horizon", S, doc="seconds after the evaluation time "
                                                         "(`4h` works)"),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds (at least 1); 0 for a linear forecast")),
                 V, C.TREND,
                 "Forecast value `horizon` seconds after the evaluation time. Linear: the "
                 "least-squares line, exactly `predict_linear`. Seasonal (`season` > 0): additive "
                 "Holt-Winters over the window resampled into bins of season/48 (bin means, empty "
                 "bins carry the previous value), seasonal indices interpolated between bin "
                 "middles; at least two seasons of data, else no result. "
                 "See docs/trend-methods.md.",
                 extension=True, unit=Unit.SAME,
                 example="forecast(disk_used_ratio[1w], 4h, season=1d) > 95%"),
    FunctionDecl("forecast_max",
                 (Param("v", M), Param("horizon", S, doc="seconds after the evaluation time, > 0"),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds (at least 1); 0 for a linear forecast")),
                 V, C.TREND,
                 "The highest forecast within (t, t + horizon], where `forecast` gives only the "
                 "value at t + horizon: compare it with a threshold for \"will cross X within "
                 "horizon\", also when a seasonal peak comes before the horizon. Linear: the "
                 "larger of the line's values at t and t + horizon. Seasonal: the highest "
                 "Holt-Winters forecast over the interval (at its ends or a bin middle).",
                 extension=True, unit=Unit.SAME,
                 example="forecast_max(disk_used_ratio[1w], 4h, season=1d) > 95%"),
    FunctionDecl("forecast_min",
                 (Param("v", M), Param("horizon", S, doc="seconds after the evaluation time, > 0"),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds (at least 1); 0 for a linear forecast")),
                 V, C.TREND,
                 "The lowest forecast within (t, t + horizon]: \"will fall below X within "
                 "horizon\". Linear: the smaller of the line's values at t and t + horizon. "
                 "Seasonal: the lowest Holt-Winters forecast over the interval.",
                 extension=True, unit=Unit.SAME,
                 example="forecast_min(node_filesystem_avail_bytes[1d], 12h) < 0"),
    FunctionDecl("anomaly",
                 (Param("v", M),
                  Param("method", STR, optional=True, default="ensemble", choices=ANOMALY_METHODS),
                  Param("season", S, optional=True, default=0.0,
                        doc="season length in seconds (`1d` works): needed by "
                            "method=\"seasonal\", adds a seasonal channel to \"ensemble\"; "
                            "shorter than the window")),
                 V, C.ANOMALY,
                 "Anomaly score of the window's newest sample against its earlier samples "
                 "(past data only); on every method's scale about 3 and above is unusual. "
                 "zscore, mad, ewma, seasonal and quantile are z-like scores; ensemble (the "
                 "default) scores how far the value, and with a season its change from one "
                 "season earlier, leaves the window's range (3 at the edge; use long windows). "
                 "Fewer than 5 usable earlier samples: no output. See docs/anomaly-methods.md.",
                 extension=True,
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
