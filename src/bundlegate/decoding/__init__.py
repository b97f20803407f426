"""Request decoding: the values of a request → the model's feed, or what is wrong with them.

One public entry, ``CompiledSchema`` (built once per bundle version): records, columns or positional
rows in, a ``Feed`` out, or ``InvalidRows`` whose problems name the row and feature
(``bundlegate.errors.Problem``). Protocols (``/v1``, ``/v2``) parse their own envelopes, hand the
values here and locate the problems in their own bodies. The vectorised paths (``_vectorised``) and
the checked path (``_checked``, over the request shapes of ``_shapes``) are private to this package.
"""

from __future__ import annotations

from bundlegate.decoding.schema import (
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_STRING_LENGTH,
    MISSING_STRING,
    CompiledSchema,
)

__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_MAX_STRING_LENGTH", "MISSING_STRING", "CompiledSchema"]
