"""Packaging for hastexo_xblock."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as handle:
        return handle.read()


def requirements(name):
    """Unpinned requirements from requirements/<name>.in (pins live in the .txt files)."""
    lines = []
    for line in read("requirements", name).splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def package_data():
    """Every non-Python file the package ships (templates, static, vendor builds, demo files)."""
    files = []
    root = os.path.join(HERE, "hastexo_xblock")
    for folder in ("static", "templates", "translations", "locale", "demo/templates"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
            dirnames[:] = [d for d in dirnames if d != "node_modules"]
            for filename in filenames:
                if not filename.endswith((".py", ".pyc")):
                    files.append(os.path.relpath(os.path.join(dirpath, filename), root))
    return files


VERSION = re.search(r'__version__ = "([^"]+)"', read("hastexo_xblock", "__init__.py")).group(1)

setup(
    name="hastexo-xblock-ng",
    version=VERSION,
    description="Real hands-on lab environments inside Open edX course units",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="AGPL-3.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["hastexo_xblock", "hastexo_xblock.*"]),
    package_data={"hastexo_xblock": package_data()},
    install_requires=requirements("base.in"),
    entry_points={
        # "stackamole": the original's name in its 9.x releases; courses that use it keep working.
        "xblock.v1": ["hastexo = hastexo_xblock:HastexoXBlock", "stackamole = hastexo_xblock:HastexoXBlock"],
        "lms.djangoapp": ["hastexo_xblock = hastexo_xblock.apps:HastexoXBlockConfig"],
        "cms.djangoapp": ["hastexo_xblock = hastexo_xblock.apps:HastexoXBlockConfig"],
        "hastexo_xblock.providers": [
            "local = hastexo_xblock.providers.local:LocalProvider",
            "openstack = hastexo_xblock.providers.heat:HeatProvider",
            "heat = hastexo_xblock.providers.heat:HeatProvider",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
