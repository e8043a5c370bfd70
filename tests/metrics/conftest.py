import importlib.util
import sys
import types

import pytest


@pytest.fixture(scope="session")
def simuleval_scorers():
    """SimulEval 1.1.4's latency scorers and LogInstance (the reference implementation).

    simuleval is installed --no-deps; its evaluator module imports pandas only to print tables,
    which scoring never touches, so a stand-in is used where pandas is absent.
    """
    if importlib.util.find_spec("simuleval") is None:
        pytest.skip("simuleval==1.1.4 is not installed")
    if importlib.util.find_spec("pandas") is None and "pandas" not in sys.modules:
        sys.modules["pandas"] = types.ModuleType("pandas")
    from simuleval.evaluator.instance import LogInstance
    from simuleval.evaluator.scorers import latency_scorer

    return latency_scorer, LogInstance
