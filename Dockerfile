# The rigwatch image: every service is `rigwatch <command>` in it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rigwatch rigwatch
COPY services services
COPY loadgen loadgen
COPY schemas schemas
# /models is owned by the service user so a named volume mounted there is writable.
RUN pip install --no-cache-dir . && useradd --create-home rigwatch && mkdir /models && chown rigwatch /models
USER rigwatch
ENTRYPOINT ["rigwatch"]
