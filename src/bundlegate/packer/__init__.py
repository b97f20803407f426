"""``bundle pack``: a trained model file and a sample in, a verified bundle version out.

The only part of bundlegate that imports scikit-learn, skl2onnx, onnx and pandas (the ``pack`` extra);
the CLI imports it lazily. One module per step::

    options           ``PackOptions`` and ``PackResult``
    model_file        load a pickle/joblib estimator or an existing .onnx file
    samples           read the sample (CSV, .npy, JSON records) into a DataFrame
    synthetic         rows for a model packed without a sample
    schema_inference  feature names, dtypes, nullability, categories, ranges, classes
    conversion        skl2onnx conversion (float32, then float64 for trees)
    predictions       a model's answers for sample rows
    parity            the original against the conversion as the gateway serves it, on the same rows
    reference         training statistics for drift monitoring, the stored sample rows
    contents          the stored sample and expected answers, as bundle files
    onnx_input        packing an existing .onnx file
    pack              ``pack_bundle(...)``: the steps above, then ``bundle.write_bundle``
"""

from __future__ import annotations

from bundlegate.packer.options import PackOptions, PackResult
from bundlegate.packer.pack import pack_bundle

__all__ = ["PackOptions", "PackResult", "pack_bundle"]
