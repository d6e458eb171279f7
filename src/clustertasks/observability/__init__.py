"""What a running server tells its operators: Prometheus metrics (``metrics``), OpenTelemetry
traces (``tracing``) and structured logs (``logs``), bundled per server in ``Telemetry``.

The layers above report through narrow hooks (``telemetry.TaskTelemetry`` for the engine,
``telemetry.traced`` for a cloud provider, the API's middleware) and never touch
``prometheus_client`` or ``opentelemetry`` themselves. This package imports nothing of
clustertasks but ``errors``: every layer may use it.
"""
