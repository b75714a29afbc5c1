# Image of the meterseg engine and simulator (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY meterseg ./meterseg
COPY stream ./stream
COPY processors ./processors
COPY simulators ./simulators
COPY console ./console
COPY prometheus ./prometheus
RUN pip install --no-cache-dir .
ENV METERSEG_KAFKA_BOOTSTRAP=kafka:9092 \
    METERSEG_REDIS_URL=redis://redis:6379/0
ENTRYPOINT ["meterseg"]
