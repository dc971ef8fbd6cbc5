# Production image: PostgreSQL-backed, several workers, non-root, no development keys.
# Build stage: wheels only. The final stage has no compilers, no pip cache, no source tree.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY crypto ./crypto
COPY telephony ./telephony
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 hotline
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /home/hotline
RUN mkdir -p /home/hotline/spool
ENV HOTLINE_ENV=production \
    HOTLINE_SPOOL_DIR=/home/hotline/spool \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# Run `hotline db upgrade` (as the owning role) before starting; the key file is mounted read-only.
# Proxy headers (X-Forwarded-*) are trusted only from HOTLINE_TRUSTED_PROXIES (none by default).
CMD ["hotline", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
