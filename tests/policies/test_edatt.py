import numpy as np
import pytest

from policies.base import Read, Write
from policies.edatt import EDAtt
from streamrt.errors import PolicyOptionError
from policy_views import token, view


def att(n_frames, recent_mass, lam):
    """Attention with `recent_mass` spread over the last `lam` frames, the rest on frame 0."""
    a = np.zeros(n_frames)
    a[0] = 1 - recent_mass
    a[-lam:] += recent_mass / lam
    return a


def test_edatt_stops_at_first_token_whose_recent_mass_reaches_alpha():
    # Papi et al. 2023, Sec. 2: emit while sum of attention on the last lambda frames < alpha
    toks = [token(" a", attention=att(50, 0.05, 4)), token(" b", attention=att(50, 0.19, 4)),
            token(" c", attention=att(50, 0.2, 4)), token(" d", attention=att(50, 0.0, 4))]
    assert EDAtt(alpha=0.2, lambda_frames=4).decide(view(toks)) == Write(2)
    assert EDAtt(alpha=0.1, lambda_frames=4).decide(view(toks)) == Write(1)
    assert EDAtt(alpha=0.01, lambda_frames=4).decide(view(toks)) == Read()


def test_edatt_lambda_widens_the_recent_region():
    a = np.zeros(50)
    a[44] = 1.0  # 6th frame from the end
    toks = [token(" a", attention=a)]
    assert EDAtt(alpha=0.5, lambda_frames=4).decide(view(toks)) == Write(1)
    assert EDAtt(alpha=0.5, lambda_frames=6).decide(view(toks)) == Read()


def test_edatt_without_attention_uses_alignment():
    toks = [token(" a", attention=None, start_ms=100), token(" b", attention=None, start_ms=990)]
    assert EDAtt().decide(view(toks, n_frames=50)) == Write(1)


def test_edatt_flushes_at_end():
    toks = [token(" a", attention=att(50, 1.0, 4))]
    assert EDAtt().decide(view(toks, finished=True)) == Write(1, final=True)


@pytest.mark.parametrize("opts", [{"alpha": 0}, {"alpha": 1.5}, {"lambda_frames": 0}])
def test_edatt_rejects_bad_settings(opts):
    with pytest.raises(PolicyOptionError):
        EDAtt(**opts)
