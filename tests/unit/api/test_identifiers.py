"""NHS numbers: the modulus-11 check digit, and keyed pseudonyms."""

import hmac

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.api.identifiers import is_valid_nhs_number, pseudonym

KEY = b"k" * 32

# Published test numbers and ones checked by hand: 9434765919 (check 9), 9434765870
# (check 0 from a check value of 11), 4010232137.
VALID = ("9434765919", "943 476 5919", "9434765870", "4010232137")


def test_valid_numbers_pass_the_check() -> None:
    assert all(is_valid_nhs_number(number) for number in VALID)


def test_a_wrong_check_digit_fails() -> None:
    assert not is_valid_nhs_number("9434765918")
    assert not is_valid_nhs_number("9434765910")


def test_a_check_value_of_ten_is_never_valid() -> None:
    # 1000000010: 1*10 + 1*2 = 12, 12 % 11 = 1, check value 10.
    assert not any(is_valid_nhs_number(f"100000001{digit}") for digit in range(10))


def test_other_shapes_fail() -> None:
    for value in (
        "",
        "943476591",
        "94347659190",
        "94347659a9",
        "\uff19" * 10,  # fullwidth nines: digits, but not ASCII
        "+434765919",
    ):
        assert not is_valid_nhs_number(value)


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_nine_digits_have_at_most_one_valid_check_digit(first_nine: str) -> None:
    valid = [digit for digit in "0123456789" if is_valid_nhs_number(first_nine + digit)]
    weights = range(10, 1, -1)
    check = 11 - sum(int(d) * w for d, w in zip(first_nine, weights, strict=True)) % 11
    expected = [] if check == 10 else [str(0 if check == 11 else check)]
    assert valid == expected


def test_a_pseudonym_is_keyed_stable_and_fits_a_referral_id() -> None:
    first = pseudonym("9434765919", KEY)
    assert first == pseudonym("943 476 5919", KEY)
    assert len(first) == 64
    assert int(first, 16) >= 0
    assert first != pseudonym("9434765919", b"another key of thirty-two bytes!")
    assert "9434765919" not in first
    assert hmac.compare_digest(first, pseudonym("9434765919", KEY))
