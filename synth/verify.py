"""The verifier: run a program in the sandbox and judge what it printed.

Convention: **a program answers by printing its result as the last non-empty line of stdout.**
That line is ``synth.result``. It is compared with the row's stated ``answer`` and, when the
row has one, its ``reference``:

- numbers compare numerically: both sides parse as int, decimal, scientific or ``a/b``
  (thousands separators, a leading ``$``, a trailing ``.``/``%`` and a short unit after the
  number — ``40 km/h``, ``12 apples`` — are ignored), and match when
  ``math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)``; so ``0.3333333`` matches ``1/3`` and
  ``42.0`` matches ``42``;
- anything else compares as text after trimming, case folding, collapsing whitespace and
  dropping surrounding quotes and a final period (``"Paris."`` matches ``paris``).

Verdicts (``synth.verdict``): ``verified`` (executed == stated, and == reference if given),
``wrong_answer`` (it ran but disagrees), ``error`` (it crashed or printed nothing),
``timeout`` (wall or CPU limit), ``violation`` (it tried something the sandbox forbids or hit a
resource limit: network, writes outside /tmp, memory, processes, output size).
``synth.reason`` says which, in one line.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from synth.sandbox import Sandbox, SandboxResult

VERIFIED, WRONG, ERROR, TIMEOUT, VIOLATION = "verified", "wrong_answer", "error", "timeout", "violation"
VERDICTS = (VERIFIED, WRONG, ERROR, TIMEOUT, VIOLATION)

REL_TOL = 1e-6
ABS_TOL = 1e-9

COL_VERDICT = "synth.verdict"
COL_RESULT = "synth.result"
COL_REASON = "synth.reason"

_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_FRAC = re.compile(r"^([+-]?\d+)\s*/\s*([+-]?\d+)$")
_UNIT = re.compile(r"^\$?([+-]?[\d,]*\.?\d+(?:[eE][+-]?\d+)?)\s*(?:%|[A-Za-z°][A-Za-z/°²³ ]{0,15})\.?$")


def parse_number(text: str | int | float | None) -> float | None:
    """The numeric value of an answer, or None when it is not a number."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(text) else None
    s = str(text).strip().rstrip(".").strip()
    if s.startswith("$"):
        s = s[1:]
    if s.endswith("%"):
        s = s[:-1]
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s).replace(" ", "")
    if _NUM.match(s):
        v = float(s)
        return v if math.isfinite(v) else None
    m = _FRAC.match(s)
    if m and int(m.group(2)) != 0:
        return float(Fraction(int(m.group(1)), int(m.group(2))))
    m = _UNIT.match(str(text).strip())  # "40 km/h", "12 apples": the number before a short unit
    if m:
        return parse_number(m.group(1))
    return None


def normalize_text(text: Any) -> str:
    s = " ".join(str(text).split()).casefold()
    s = s.strip().strip("\"'`").rstrip(".").strip()
    return s


def answers_match(a: Any, b: Any) -> bool:
    """Numeric comparison with tolerance when both are numbers, else normalized text."""
    if a is None or b is None:
        return False
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if (x is None) != (y is None):
        return False
    return normalize_text(a) == normalize_text(b)


def answer_key(a: Any) -> str:
    """A canonical key for voting: equal keys <=> answers_match (up to the tolerance)."""
    x = parse_number(a)
    if x is not None:
        return f"num:{float(f'{x:.6g}')!r}"
    return f"text:{normalize_text(a)}"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    result: str | None
    reason: str


def judge(run: SandboxResult, answer: Any, reference: Any = None) -> Verdict:
    """The verdict for one executed program against its stated answer and optional reference."""
    if run.status == "timeout":
        return Verdict(TIMEOUT, run.last_line, run.reason)
    if run.status == "violation":
        return Verdict(VIOLATION, run.last_line, run.reason)
    if run.status != "ok":
        return Verdict(ERROR, run.last_line, run.reason)
    result = run.last_line
    if result is None:
        return Verdict(ERROR, None, "the program printed nothing (it must print its result as the last line)")
    has_answer = answer is not None and str(answer).strip() != ""
    has_ref = reference is not None and str(reference).strip() != ""
    if not has_answer and not has_ref:
        return Verdict(ERROR, result, "row has neither an `answer` nor a `reference` to compare with")
    if has_answer and not answers_match(result, answer):
        return Verdict(WRONG, result, f"executed {result[:80]!r} but stated {str(answer)[:80]!r}")
    if has_ref and not answers_match(result, reference):
        return Verdict(WRONG, result, f"executed {result[:80]!r} but the reference is {str(reference)[:80]!r}")
    why = "executed == stated" if has_answer else "executed == reference"
    if has_answer and has_ref:
        why = "executed == stated == reference"
    return Verdict(VERIFIED, result, why)


def verify_programs(sandbox: Sandbox, items: Iterable[tuple[Any, Any, Any]], workers: int = 2) -> Iterator[Verdict]:
    """Verdicts for (program, answer, reference) triples, in order; ``workers`` sandboxes at once."""
    sandbox.check()

    def one(item: tuple[Any, Any, Any]) -> Verdict:
        program, answer, reference = item
        if not isinstance(program, str) or not program.strip():
            return Verdict(ERROR, None, "row has no `program` (Python source) to run")
        return judge(sandbox.run(program), answer, reference)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from pool.map(one, items)


def majority(answers: list[Any]) -> tuple[str | None, int]:
    """Self-consistency: the most common answer key among ``answers`` and its vote count.

    Ties go to the key seen first, so the outcome does not depend on hash order."""
    keys = [answer_key(a) for a in answers if a is not None and str(a).strip()]
    if not keys:
        return None, 0
    counts = Counter(keys)
    best = max(counts.values())
    for k in keys:
        if counts[k] == best:
            return k, best
    return None, 0  # unreachable
