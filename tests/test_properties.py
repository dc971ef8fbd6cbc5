"""Property tests (issue 12, part 5) for the parsers and formatters callers' input goes through.
The E.164 normaliser, the TwiML builders and the prompt menu have theirs in tests/telephony and
tests/calls; here: the A-number parser, the SMS report and rights keyword parsers, the log format."""

from __future__ import annotations

import json
import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from app.cases.schemas import normalize_a_number
from app.logging import JsonFormatter
from app.reports.service import _CODE_IN_TEXT

anything = st.text(max_size=60)


@given(raw=anything)
def test_an_a_number_is_refused_or_exactly_a_and_nine_digits(raw: str) -> None:
    try:
        parsed = normalize_a_number(raw)
    except ValueError:
        return
    assert re.fullmatch(r"A\d{9}", parsed)
    digits = re.sub(r"\D", "", raw)
    assert parsed[1:] == digits.zfill(9)


@given(
    digits=st.text(alphabet="0123456789", min_size=7, max_size=9),
    prefix=st.sampled_from(["", "A", "a", "A-", " A "]),
    spaced=st.booleans(),
)
def test_every_written_form_of_a_valid_a_number_is_accepted(digits: str, prefix: str, spaced: bool) -> None:
    written = prefix + (" ".join(digits[i : i + 3] for i in range(0, len(digits), 3)) if spaced else digits)
    assert normalize_a_number(written) == "A" + digits.zfill(9)


@given(message=st.text(), extra=st.dictionaries(st.from_regex(r"[a-z]{1,10}", fullmatch=True), st.text()))
def test_a_log_record_is_always_one_line_of_json(message: str, extra: dict[str, str]) -> None:
    record = logging.LogRecord("hotline.test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        if key not in record.__dict__:
            setattr(record, key, value)
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\r" not in line  # no forged log lines, whatever the text
    parsed = json.loads(line)
    assert parsed["msg"] == message


@given(text=anything)
def test_the_report_code_parser_takes_exactly_ten_digits(text: str) -> None:
    match = _CODE_IN_TEXT.match(text)
    if match is None:
        return
    assert re.fullmatch(r"\d{10}", match.group(1))
    assert not match.group(2).startswith(tuple("0123456789"))  # an 11th digit is never dropped


@given(code=st.text(alphabet="0123456789", min_size=10, max_size=10), rest=st.text(max_size=40))
def test_a_code_and_information_are_told_apart(code: str, rest: str) -> None:
    match = _CODE_IN_TEXT.match(f"{code} {rest}")
    assert match is not None and match.group(1) == code
    assert match.group(2) == rest.lstrip()  # the information, whole, never part of the code
