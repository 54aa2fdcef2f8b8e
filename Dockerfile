# GPU image: `docker build -t heatforecast .` then
# `docker run --gpus all -v "$PWD/logs:/app/logs" heatforecast python train.py trainer=gpu`
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 1000 heat
COPY pyproject.toml README.md ./
COPY src ./src
# The base image's CUDA torch satisfies the project's torch>=2.4, so pip keeps it.
RUN pip install --no-cache-dir . && mkdir -p /app/logs && chown heat /app/logs
COPY --chown=heat conf ./conf
COPY --chown=heat train.py evaluate.py ./
COPY --chown=heat scripts ./scripts
COPY --chown=heat data ./data
USER 1000
VOLUME ["/app/logs"]
CMD ["python", "train.py"]
