"""The one thing pyproject.toml cannot say: find harp's packages and ship the app's folder ``app/`` as ``harp_app``.

Everything else (metadata, dependencies, package data) is in pyproject.toml. The app stays in ``app/`` in the
repository; an installed wheel (and an editable install) holds it as the package ``harp_app``, which
``harp.app_files.app_entry`` finds for ``harp app``.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["harp", "harp.*"]),
        "harp_app",
        *(f"harp_app.{name}" for name in find_packages(where="app")),
    ],
    package_dir={"harp_app": "app"},
)
