FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs a key at build time only; the real one comes from the environment.
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v0 \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /data/imports /data/media \
    && chown -R app /data
USER app

ENV IMPORT_DIR=/data/imports MEDIA_ROOT=/data/media
EXPOSE 8000
CMD ["gunicorn", "customerpanel.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", "--threads", "8", "--timeout", "120", "--access-logfile", "-"]
