"""MkDocs hook: ship MathJax with the built site so formulas render without internet.

MathJax 3 comes from the PyPI package ``django-static-mathjax`` (in the ``docs`` extra; it carries only the
static files); after the build its ``es5`` bundle is copied to ``site/assets/mathjax/``, which the pages load
through ``extra_javascript``.
"""

import shutil
from pathlib import Path


def on_post_build(config, **kwargs):
    try:
        import mathjax
    except ImportError as err:  # pragma: no cover - the docs extra installs it
        raise SystemExit("the docs need MathJax: pip install -e '.[docs]'") from err
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
