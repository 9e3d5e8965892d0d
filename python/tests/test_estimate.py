"""zerotrain.estimate_model_states is the C++ estimate (ZeRO paper formulas).

What this catches: arguments passed in the wrong order (stage for world size),
the dtype ignored, offload not moving bytes to the host, or an impossible
combination returning numbers instead of raising.
"""

import pytest

import zerotrain


def test_the_zero_paper_numbers():
    # 7.5B parameters on 64 ranks, mixed precision (the ZeRO paper's Figure 1).
    psi, n = 7_500_000_000, 64
    shard = (psi + n - 1) // n
    assert zerotrain.estimate_model_states(psi, n, 0)["device_total"] == 16 * psi
    assert zerotrain.estimate_model_states(psi, n, 1)["device_total"] == 4 * psi + 12 * shard
    assert zerotrain.estimate_model_states(psi, n, 2)["device_total"] == 2 * psi + 14 * shard
    assert zerotrain.estimate_model_states(psi, n, 3)["device_total"] == 16 * shard


def test_fp32_and_offload():
    assert zerotrain.estimate_model_states(1000, 1, 0, dtype="fp32")["device_total"] == 4000 + 4000 + 8000
    s = zerotrain.estimate_model_states(1000, 2, 3, offload_optimizer=True, offload_param=True)
    assert s["parameters"] == 0 and s["host_parameters"] == 2 * 500
    assert s["host_total"] == 12 * 500 + 2 * 500 + 4 * 500


def test_impossible_combinations_raise():
    with pytest.raises(ValueError):
        zerotrain.estimate_model_states(1000, 2, 0, offload_optimizer=True)
    with pytest.raises(ValueError):
        zerotrain.estimate_model_states(1000, 2, 2, offload_optimizer=True, offload_param=True)
    with pytest.raises(ValueError):
        zerotrain.estimate_model_states(1000, 2, 1, dtype="fp8")
