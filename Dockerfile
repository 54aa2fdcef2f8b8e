# GPU image: `docker build -t heatforecast .` then
# `docker run --gpus all -v "$PWD/logs:/app/logs" heatforecast python train.py trainer=gpu`
# torch 2.11.0 + CUDA 13.0 on Python 3.12: the stack scripts/gpu_check.sh passed on (docs/performance.md).
FROM pytorch/pytorch:2.11.0-cuda13.0-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Run as uid 1000, the usual owner of the host's logs/ folder; Ubuntu 24.04 images already have one
# (`ubuntu`), older ones get a user `heat`.
RUN id -u 1000 >/dev/null 2>&1 || useradd --create-home --uid 1000 heat
COPY pyproject.toml README.md ./
COPY src ./src
# The base image's CUDA torch satisfies the project's torch>=2.4, so pip keeps it.
# --break-system-packages: needed if the image's Python is marked externally managed (PEP 668), as
# Ubuntu 24.04's Python 3.12 is; ignored otherwise. This image is that Python's only user.
RUN pip install --no-cache-dir --break-system-packages . && mkdir -p /app/logs && chown 1000 /app/logs
COPY --chown=1000 conf ./conf
COPY --chown=1000 train.py evaluate.py ./
COPY --chown=1000 scripts ./scripts
COPY --chown=1000 data ./data
USER 1000
VOLUME ["/app/logs"]
CMD ["python", "train.py"]
