"""The app's registered functions, as the Functions host indexes them, built once per test process.

azure-functions' `FunctionApp.get_functions()` builds the blueprints' functions again on every
call and then refuses the names an earlier call on the same app recorded (`functions_bindings`).
So the functions are built once, from a shallow copy of the app with none recorded: whoever else
indexes `function_app.app` in this process (before or after) is not refused either.
"""

from __future__ import annotations

import copy
from functools import cache

import azure.functions as func

import function_app


@cache
def registered_functions() -> dict[str, func.Function]:
    """Function name -> function, for every function the app registers."""
    app = copy.copy(function_app.app)
    app.functions_bindings = {}
    return {function.get_function_name(): function for function in app.get_functions()}
