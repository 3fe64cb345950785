"""The test-time runtime type checker.

``tests/conftest.py`` installs jaxtyping's import hook over ``diffsim`` with this checker, so that
every annotation in the package (shapes and dtypes included) is checked on every call while the
test suite runs. It is not used at import time by users: ``beartype`` is only a test dependency.

``is_pep484_tower=True`` accepts an ``int`` where ``float`` is annotated, as PEP 484 says.
"""

import beartype


typechecker = beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))
