# The rigwatch image: every service (and the pump) is `rigwatch <command>` in it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# LightGBM's wheel links the system OpenMP runtime (libgomp.so.1), which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY rigwatch rigwatch
COPY services services
COPY loadgen loadgen
COPY schemas schemas
# /models and /cache are owned by the service user so named volumes mounted there are writable.
RUN pip install --no-cache-dir . \
    && useradd --create-home rigwatch \
    && mkdir /models /cache \
    && chown rigwatch /models /cache
USER rigwatch
# Relative state (RIGWATCH_RUN_DIR, the faust data folders under it) lands in the user's home:
# /app belongs to root.
WORKDIR /home/rigwatch
ENV RIGWATCH_MODEL_DIR=/models/cooler \
    RIGWATCH_CACHE_DIR=/cache
ENTRYPOINT ["rigwatch"]
