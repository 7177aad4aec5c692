# The serving images. The default (last) target: serve-kit on CUDA. ONNX Runtime's CUDA provider runs each bundle's fp16 model where
# a GPU is visible (SERVE_DEVICE=auto; the CPU elsewhere). Only serving/ goes in: no training code, no data,
# no models (mount a model repository at /models). Two stages, so pip and its caches stay behind.
#
#   docker build -t serve-kit .
#   docker run --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v "$PWD/models:/models:ro" serve-kit
#
# `--target cpu`: a CPU host's image, without torch at all (bundles are read, prepared and run by Pillow,
# numpy and ONNX Runtime): a few hundred MB instead of several GB, and a lean process.
#
#   docker build --target cpu -t serve-kit:cpu .
ARG CUDA_BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG CPU_BASE=python:3.11-slim-bookworm

FROM ${CPU_BASE} AS cpu
COPY pyproject.toml README.md /src/
COPY serving /src/serving
RUN python -m venv /opt/serve-kit \
    && /opt/serve-kit/bin/pip install --no-cache-dir /src \
    && rm -rf /src \
    && useradd --create-home --uid 10001 serve
ENV PATH=/opt/serve-kit/bin:$PATH \
    SERVE_HOST=0.0.0.0 \
    SERVE_MODELS_DIR=/models \
    SERVE_DEVICE=cpu \
    SERVE_LOG_FORMAT=json
USER serve
VOLUME ["/models"]
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["serve-kit", "health"]
ENTRYPOINT ["serve-kit", "serve"]

FROM ${CUDA_BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/serve-kit
COPY pyproject.toml README.md /src/
COPY serving /src/serving
# The base install and PyTorch (its runtime, GPU preparation); onnxruntime-gpu replaces the CPU build
# (both ship the `onnxruntime` module, so they must never be installed side by side).
RUN /opt/serve-kit/bin/pip install --no-cache-dir "/src[torch]" \
    && /opt/serve-kit/bin/pip uninstall --yes onnxruntime \
    && /opt/serve-kit/bin/pip install --no-cache-dir onnxruntime-gpu

FROM ${CUDA_BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 serve
COPY --from=build /opt/serve-kit /opt/serve-kit
ENV PATH=/opt/serve-kit/bin:$PATH \
    SERVE_HOST=0.0.0.0 \
    SERVE_MODELS_DIR=/models \
    SERVE_DEVICE=auto \
    SERVE_LOG_FORMAT=json
USER serve
VOLUME ["/models"]
# Triton's layout: KServe V2 over HTTP/REST, gRPC, Prometheus /metrics
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["serve-kit", "health"]
ENTRYPOINT ["serve-kit", "serve"]
