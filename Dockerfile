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
ENTRYPOINT ["sluicegate"]
CMD ["run"]
