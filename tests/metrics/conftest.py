import importlib.util

import pytest


@pytest.fixture(scope="session")
def simuleval_scorers():
    """SimulEval 1.1.4's latency scorers and LogInstance (the reference implementation).

    simuleval is installed --no-deps by `make setup`; pandas, which its evaluator imports, is a dev
    dependency of ours.
    """
    if importlib.util.find_spec("simuleval") is None:
        pytest.skip("simuleval==1.1.4 is not installed")
    from simuleval.evaluator.instance import LogInstance
    from simuleval.evaluator.scorers import latency_scorer

    return latency_scorer, LogInstance
