# Minimal for now: the training kit on CPU. The GPU issue turns this into the CUDA serving image.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist make \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home kit
WORKDIR /app
COPY pyproject.toml README.md ./
COPY training training
COPY serving serving
RUN pip install --no-cache-dir '.[train]'
USER kit
ENTRYPOINT ["train-kit"]
