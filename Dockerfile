# One image for every phonebatch service: worker, simulator (and the CLI).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY config ./config
COPY jobs ./jobs
COPY worker ./worker
COPY simulator ./simulator
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home phonebatch \
    && mkdir -p /var/lib/phonebatch && chown phonebatch /var/lib/phonebatch
USER phonebatch
ENTRYPOINT ["phonebatch"]
