"""Job handlers, one module per kind (`run(ctx)`, optional `housekeeping(settings, database)`).

The kinds themselves are declared in `jobgate.kinds`; its specs name these modules.
"""
