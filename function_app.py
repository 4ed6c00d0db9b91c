"""Azure Functions entry point: wires the triggers in `shared/` and nothing else."""

import azure.functions as func

from shared.api import bp as api
from shared.worker import bp as worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(api)
app.register_functions(worker)
