"""``bundle pack``: a trained model file and a sample in, a verified bundle version out.

The only part of bundlegate that imports scikit-learn, skl2onnx, onnx and pandas (the ``pack`` extra);
the CLI imports it lazily. One module per step::

    model_file        load a pickle/joblib estimator or an existing .onnx file
    samples           read the sample (CSV, .npy, JSON records) into a DataFrame
    schema_inference  feature names, dtypes, nullability, categories, ranges, classes
    conversion        skl2onnx conversion (float32, then float64 for trees)
    parity            run the original and the ONNX model on the same rows and compare
    reference         training statistics for drift monitoring, the stored sample rows
    pack              ``pack_bundle(...)``: the steps above, then ``bundle.write_bundle``
"""

from __future__ import annotations

from bundlegate.packer.pack import PackOptions, PackResult, pack_bundle

__all__ = ["PackOptions", "PackResult", "pack_bundle"]
