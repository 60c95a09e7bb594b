"""Forecasting helpers beside the ``forecasting`` task: metrics and baselines (:mod:`rnnkit.forecast.metrics`,
:mod:`rnnkit.forecast.statistical`). The rolling-origin backtest, which trains runs, is :mod:`rnnkit.backtest`.
See docs/forecasting.md."""
