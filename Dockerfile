# syntax=docker/dockerfile:1
# The node image of every rendered cluster (conf/cluster/{aws,gcp,kuberay}.yaml: cluster.image and
# cluster.gpu_image): Ray 2.60 on Python 3.11 with Foundry installed, so that nodes start with nothing to
# install (the launcher's setup commands and KubeRay's pods run no pip).
#
#   docker build -t ghcr.io/<org>/foundry:0.1.0 .                              # CPU (torch's CPU wheel)
#   docker build --build-arg VARIANT=gpu -t ghcr.io/<org>/foundry:0.1.0-gpu .  # CUDA (torch from PyPI)
#
# The base tags follow the Ray pin in pyproject.toml (tests/unit/test_dockerfile.py checks that, and lints
# this file with hadolint). Needs BuildKit (Docker 23+), which builds only the stages VARIANT selects.
# `hadolint ignore=DL3006` below: base-${VARIANT} names a stage of this file (tagged above), not an image.
ARG VARIANT=cpu

# The CPU image takes torch's CPU build: PyPI's Linux torch pulls gigabytes of CUDA libraries.
FROM rayproject/ray:2.60.0-py311 AS base-cpu
ENV FOUNDRY_TORCH_INDEX=https://download.pytorch.org/whl/cpu

# rayproject's GPU images carry CUDA; PyPI's torch brings its own CUDA runtime and needs only the driver.
FROM rayproject/ray:2.60.0-py311-gpu AS base-gpu
ENV FOUNDRY_TORCH_INDEX=https://pypi.org/simple

# The wheel is built in a stage of its own, so no source tree or build files end up in the image. The
# build writes into its source tree, so it runs on a copy the ray user owns (whoever owns the COPY).
# hadolint ignore=DL3006
FROM base-${VARIANT} AS wheel
COPY pyproject.toml setup.py README.md LICENSE constraints.txt /tmp/foundry/
COPY foundry /tmp/foundry/foundry
COPY jobs /tmp/foundry/jobs
COPY serve_apps /tmp/foundry/serve_apps
COPY cluster /tmp/foundry/cluster
COPY conf /tmp/foundry/conf
RUN cp -r /tmp/foundry /tmp/src \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /tmp/src \
    && cp /tmp/src/constraints.txt /tmp/dist/

# hadolint ignore=DL3006
FROM base-${VARIANT}
# torch first, from the variant's index (torch==2.13.0 is constraints.txt's pin; the test checks they
# agree), then Foundry with the cloud SDKs (the Ray auth token from the cloud's secret manager, the
# autoscaler's clients) under the same pins as the dev machines. The wheel is mounted, not copied: no layer.
# The console script lands where conf/cluster/kuberay.yaml's cluster.ingress.wrapper expects it.
RUN --mount=type=bind,from=wheel,source=/tmp/dist,target=/tmp/dist \
    pip install --no-cache-dir --index-url "${FOUNDRY_TORCH_INDEX}" "torch==2.13.0" \
    && pip install --no-cache-dir -c /tmp/dist/constraints.txt "$(find /tmp/dist -name 'foundry-*.whl')[cloud]" \
    && test -x /home/ray/anaconda3/bin/foundry-haproxy \
    && python -c "import cluster, foundry.serving.haproxy_ingress, foundry_conf, jobs, serve_apps, torch"
WORKDIR /home/ray
