# MILS job service: one image for `mils db upgrade`, `mils web` and `mils worker`
# (see docker-compose.yml). torch/torchvision are pinned in pyproject.toml; their PyPI wheels
# are CUDA builds, so the image uses the GPU on a host with the NVIDIA Container Toolkit and
# runs on CPU elsewhere.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # SQLite default database and MILS's model caches; mount a volume here.
    MILS_HOME=/data \
    # Hugging Face / torch hub downloads of real models go to the same volume.
    HF_HOME=/data/huggingface \
    TORCH_HOME=/data/torch

# Install the package (non-editable) with Flower for the compose file's `flower` service;
# .dockerignore keeps the context to the sources it needs.
WORKDIR /src
COPY . .
RUN pip install ".[flower]" && rm -rf /src

# `mils batch eval`: pycocoevalcap's PTB tokenizer and METEOR are Java programs, and they write
# their temporary files beside their jars, so its folder belongs to the user that runs them.
# The embedded scorer's OCR (rapidocr-onnxruntime) needs opencv-python, whose library links libGL
# and GLib, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends default-jre-headless libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# Run as an unprivileged user that owns the data folder.
RUN useradd --create-home --uid 10001 mils \
    && mkdir -p /data && chown mils:mils /data \
    && chown -R mils:mils "$(python -c 'import os, pycocoevalcap; print(os.path.dirname(pycocoevalcap.__file__))')"
USER mils
WORKDIR /data

ENTRYPOINT ["mils"]
CMD ["--help"]
