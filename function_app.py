"""Azure Functions entry point: wires the triggers in `shared/` and nothing else."""

import azure.functions as func

from shared.runtime import apply_logging_policy, configure_telemetry

apply_logging_policy()  # before any blueprint is imported: no client may log a URL with a secret
configure_telemetry()  # nothing exported unless APPLICATIONINSIGHTS_CONNECTION_STRING or OTEL_EXPORTER_OTLP_ENDPOINT is set

from shared.triggers.console import bp as console  # noqa: E402
from shared.triggers.http_api import bp as api  # noqa: E402
from shared.triggers.queues import bp as worker  # noqa: E402

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(api)
app.register_functions(worker)
app.register_functions(console)
