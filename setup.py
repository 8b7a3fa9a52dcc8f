"""The one build step pyproject.toml cannot say: the repository keeps the diagnostics and the
default thresholds at its top level (``diagnostics/``, ``thresholds.yaml``), and the wheel carries
them inside the package (``vlmdiag/diagnostics/``, ``vlmdiag/thresholds.yaml``), so that
``pip install vlmdiag`` runs them from any folder (:mod:`vlmdiag.packaged` finds either layout).
Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """build_py that also copies ``thresholds.yaml`` into the built package."""

    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads the repository's own file
            self.copy_file("thresholds.yaml", str(Path(self.build_lib, "vlmdiag", "thresholds.yaml")))


setup(packages=[*find_namespace_packages(include=["vlmdiag", "vlmdiag.*"]), "vlmdiag.diagnostics"],
      package_dir={"vlmdiag.diagnostics": "diagnostics"},
      cmdclass={"build_py": BuildPy})
