# sluicegate processor image: slim, non-root, pinned by constraints.txt.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY stream stream
COPY handlers handlers
COPY schemas schemas
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels '.[local]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sluicegate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY examples/sluicegate.toml /etc/sluicegate/sluicegate.toml
USER 10001
ENV SLUICEGATE_CONFIG=/etc/sluicegate/sluicegate.toml \
    PYTHONUNBUFFERED=1
EXPOSE 9464
# /healthz on the metrics port (SLUICEGATE_METRICS__PORT if set), with the stdlib: the
# slim image has no curl. Any error or non-2xx answer raises, and python exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SLUICEGATE_METRICS__PORT') or '9464'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["sluicegate"]
CMD ["run"]
