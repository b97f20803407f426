"""The serving process: uvicorn wiring (``run``), the ``--workers N`` supervisor (``workers``), the
connection protocol whose writes leave together (``wire``) and malloc tuning (``heap``)."""
