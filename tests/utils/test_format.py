"""npcf.utils.format: numbers for people."""
import pytest

from npcf.utils.format import decimal


@pytest.mark.parametrize("v, places, text", [
    (0.8471, 4, "0.8471"), (19.00453, 4, "19.0045"), (0.0, 4, "0.0000"), (-0.5, 4, "-0.5000"),
    (4.5e-05, 4, "4.5e-05"), (0.00045, 3, "0.00045"), (3.4567, 3, "3.457"), (0.0123, 3, "0.012"),
])
def test_decimal_keeps_tiny_values_visible(v, places, text):
    assert decimal(v, places) == text


def test_json_float_keeps_every_float32_digit_and_no_float64_noise():
    import numpy as np

    from npcf.utils.format import json_float
    assert json_float(np.float32(3.456789)) == 3.456789          # not 3.4568
    assert repr(json_float(np.float32(3.456789))) == "3.456789"  # not 3.4567890167236328
    tiny = np.float32([0.0031, 0.00312, 0.0005])                  # a 0.0005-0.005 scale
    assert [json_float(v) for v in tiny] == [0.0031, 0.00312, 0.0005]
    assert len({json_float(v) for v in tiny}) == 3
    for v in np.random.default_rng(0).standard_normal(200).astype(np.float32) * 1e-3:
        assert np.float32(json_float(v)) == v                     # reads back exactly
    assert json_float(0.0) == 0.0
