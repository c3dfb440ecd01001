# The worker image of crashlab's docker runtime, for machines that can pull
# from a registry. The harness itself (Redis, Toxiproxy, the transcription
# service, the API) stays on the host; only workers run in containers, on the
# host's network.
#
#   docker build -t crashlab-worker:mine .
#   docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t crashlab-worker:mine .
#   CRASHLAB_IMAGE=crashlab-worker:mine crashlab run --all --runtime docker
#
# Without a registry, `crashlab image build` makes an equivalent image from a
# debootstrapped Debian and a wheelhouse built on the host (harness/image.py).
# Both install the project into /opt/crashlab, where the docker runtime looks
# for its interpreter. The base must have Python 3.11 with venv, like the harness.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PATH=/opt/crashlab/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

COPY . /src
RUN python3 -m venv /opt/crashlab \
 && /opt/crashlab/bin/python -m pip install --no-cache-dir --disable-pip-version-check /src \
 && rm -rf /src

CMD ["python", "-m", "system_under_test", "worker"]
