# bundlegate gateway image: the package without the `pack` extra (no scikit-learn, skl2onnx, pandas;
# the sklearn-runtime variant below adds scikit-learn, joblib and pandas, never the packer),
# one gateway process per container, a numeric non-root user, and nothing written outside /tmp, so
# it runs with a read-only root filesystem.
#
#   docker build -t bundlegate .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 --stop-timeout 30 \
#     -v "$PWD/bundles:/bundles:ro" -v "$PWD/keys.json:/etc/bundlegate/keys.json:ro" bundlegate

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the wheel, then a virtualenv with it and its runtime dependencies --------------------------
FROM ${PYTHON_IMAGE} AS build
# The variant that serves runtime: sklearn (pickle fallback) bundles:
#   docker build --build-arg GATEWAY_EXTRAS=sklearn-runtime \
#     --build-arg RUNTIME_PINS="scikit-learn==1.9.1 numpy==2.4.6 pandas==3.1.1" -t bundlegate:sklearn .
# RUNTIME_PINS are the versions `bundle inspect` shows for the bundles: the gateway loads a pickle only
# with exactly the library versions it was packed with.
# s3 (bundles from object storage, `bundle serve s3://...`) is in by default; GATEWAY_EXTRAS=
# leaves it out, GATEWAY_EXTRAS=sklearn-runtime,s3 keeps it in the sklearn variant.
ARG GATEWAY_EXTRAS="s3"
ARG RUNTIME_PINS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The last step proves the variant: scikit-learn is in the virtualenv exactly when sklearn-runtime was asked.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/bundlegate \
 && wheel="$(echo /wheels/bundlegate-*.whl)" \
 && /opt/bundlegate/bin/python -m pip install --no-compile "${wheel}${GATEWAY_EXTRAS:+[${GATEWAY_EXTRAS}]}" \
      ${RUNTIME_PINS} \
 && /opt/bundlegate/bin/python -m compileall -q /opt/bundlegate/lib \
 && /opt/bundlegate/bin/python -c "import importlib.util as u, sys; sys.exit((u.find_spec('sklearn') is None) == ('sklearn-runtime' in sys.argv[1]))" "${GATEWAY_EXTRAS}"

# --- runtime ------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="bundlegate" \
      org.opencontainers.image.description="Model-serving gateway for packaged scikit-learn/ONNX bundles" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 bundlegate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin bundlegate \
 && mkdir -p /bundles /etc/bundlegate

COPY --from=build /opt/bundlegate /opt/bundlegate

# Bytecode was compiled at build time; nothing is written at run time (read-only root filesystem).
# Drain (20 s) stays under Kubernetes' default 30 s grace period; the chart checks its own numbers.
ENV PATH=/opt/bundlegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BUNDLEGATE_REPOSITORY=/bundles \
    BUNDLEGATE_KEYS_FILE=/etc/bundlegate/keys.json \
    BUNDLEGATE_HOST=0.0.0.0 \
    BUNDLEGATE_PORT=8080 \
    BUNDLEGATE_WORKERS=1 \
    BUNDLEGATE_DRAIN_TIMEOUT_S=20

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM

# No curl in a slim image: Python's urllib asks /healthz on the configured port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BUNDLEGATE_PORT', '8080') + '/healthz', timeout=2)"]

# `bundle serve` with every setting from the BUNDLEGATE_* variables above, so `docker run -e
# BUNDLEGATE_PORT=9000 ...` changes the port for the server and the health check alike (a flag here
# would win over the variable). Other commands run too: `docker run IMAGE keys list --file ...`.
ENTRYPOINT ["bundle"]
CMD ["serve"]
