"""npcf.utils.format: numbers for people."""
import pytest

from npcf.utils.format import decimal


@pytest.mark.parametrize("v, places, text", [
    (0.8471, 4, "0.8471"), (19.00453, 4, "19.0045"), (0.0, 4, "0.0000"), (-0.5, 4, "-0.5000"),
    (4.5e-05, 4, "4.5e-05"), (0.00045, 3, "0.00045"), (3.4567, 3, "3.457"), (0.0123, 3, "0.012"),
])
def test_decimal_keeps_tiny_values_visible(v, places, text):
    assert decimal(v, places) == text
