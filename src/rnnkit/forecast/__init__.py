"""Forecasting helpers beside the ``forecasting`` task: metrics and baselines (:mod:`rnnkit.forecast.metrics`)
and rolling-origin backtests (:mod:`rnnkit.forecast.backtest`, loaded on use). See docs/forecasting.md."""
