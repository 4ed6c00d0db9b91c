"""The app's registered functions, built once per test process.

azure-functions' `FunctionApp.get_functions()` builds the blueprints' functions again on every
call and then rejects its own names as duplicates, so every test must share one result.
"""

from __future__ import annotations

from functools import cache

import azure.functions as func

import function_app


@cache
def registered_functions() -> dict[str, func.Function]:
    return {function.get_function_name(): function for function in function_app.app.get_functions()}
