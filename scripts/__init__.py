"""img2img scripts (A1111's Script dropdown): pure orchestration over the engine, one module per script.

Each script module has TITLE, a frozen params dataclass the UI builds directly, parse_script_args (the
A1111 API's positional script_args) and run(engine, request, params, on_progress, control, context).
scripts.registry looks them up by name.
"""
