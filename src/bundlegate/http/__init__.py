"""The HTTP layer, the only package that knows Starlette: ``create_app`` in ``bundlegate.http.app``."""
