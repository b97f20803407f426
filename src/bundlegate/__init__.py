"""bundlegate: pack scikit-learn models into verified ONNX bundles and serve them over HTTP."""

__version__ = "0.1.0"
