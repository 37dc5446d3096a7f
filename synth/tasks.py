"""Synthetic-data tasks: versioned prompt templates and the parsers of what comes back.

Each task's ``template_hash`` (sha256 over name, version, the template text and every option
that changes the prompt, e.g. the constitution) goes into the provenance and into the request
cache key. Changing a template means bumping ``version``; either way the hash changes.

- ``rewrite`` — a high-quality seed document rewritten as a textbook section (seeds picked by
  a quality column, see the stage's ``quality_column``/``min_quality``).
- ``qa`` — one question–answer pair grounded in a seed document; ``synth.grounding`` is the
  fraction of the answer's content words that occur in the document.
- ``reasoning`` — a math/logic problem solved as: reasoning, a Python program that prints the
  answer (program-of-thought), and a stated ``Answer:``; verified in the sandbox by the stage.
- ``critique`` — critique of a document against a constitution (a TOML list of rules) and a
  rewrite that follows them; the original is kept beside the rewrite.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    system: str
    user: str
    #: worked examples shown before the request as (user, assistant) turns: small models follow
    #: a format far better after one example, and the shared prefix is what prefix caching reuses
    examples: tuple[tuple[str, str], ...] = ()

    def hash(self, extra: Any = None) -> str:
        blob = json.dumps([self.name, self.version, self.system, self.user, list(self.examples), extra], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


REWRITE = Template(
    "rewrite", 1,
    "You are an expert teacher who writes clear, accurate textbooks.",
    "Rewrite the following text as a section of a textbook for students. Keep every fact, "
    "explain terms, use short paragraphs, and do not add information that is not in the text.\n\n"
    "Text:\n{text}\n\nTextbook section:",
)

QA = Template(
    "qa", 1,
    "You write exam questions that can be answered from a given document alone.",
    "Read the document and write one question that it answers, then the answer, using only "
    "facts from the document. Use exactly this format:\nQuestion: <question>\nAnswer: <answer>\n\n"
    "Document:\n{text}",
    examples=((
        "Read the document and write one question that it answers, then the answer, using only "
        "facts from the document. Use exactly this format:\nQuestion: <question>\nAnswer: <answer>\n\n"
        "Document:\nThe Debian project was founded by Ian Murdock in 1993. It produces a free "
        "operating system whose packages are managed with dpkg and apt.",
        "Question: Who founded the Debian project?\nAnswer: Ian Murdock founded the Debian project in 1993.",
    ),),
)

REASONING = Template(
    "reasoning", 1,
    "You solve math and logic problems carefully and check your work with Python.",
    "Solve the problem. First reason step by step. Then write a short Python program that "
    "computes the answer and prints it as its last line. Finally state the answer. Use exactly "
    "this format:\nReasoning: <steps>\n```python\n<program>\n```\nAnswer: <answer>\n\n"
    "Problem: {text}",
    examples=((
        "Solve the problem. First reason step by step. Then write a short Python program that "
        "computes the answer and prints it as its last line. Finally state the answer. Use exactly "
        "this format:\nReasoning: <steps>\n```python\n<program>\n```\nAnswer: <answer>\n\n"
        "Problem: Tom has 3 bags with 5 marbles each. He gives away 4 marbles. How many marbles does he have left?",
        "Reasoning: 3 bags of 5 marbles is 3 * 5 = 15 marbles. After giving away 4, he has 15 - 4 = 11.\n"
        "```python\nmarbles = 3 * 5\nleft = marbles - 4\nprint(left)\n```\nAnswer: 11",
    ),),
)

CRITIQUE = Template(
    "critique", 1,
    "You are a careful editor who follows a written constitution.",
    "Constitution:\n{rules}\n\nFirst, critique the text below against each rule of the "
    "constitution. Then rewrite the text so that it follows every rule, keeping its meaning. "
    "Use exactly this format:\nCritique: <critique>\nRewrite: <rewritten text>\n\nText:\n{text}",
)

TEMPLATES = {t.name: t for t in (REWRITE, QA, REASONING, CRITIQUE)}


def load_constitution(path: str | None = None, rules: list[str] | None = None) -> list[str]:
    """Rules from a TOML file (``rules = ["...", ...]`` or ``[[rule]] text = "..."``) or inline."""
    if rules:
        return [str(r) for r in rules]
    if not path:
        raise ValueError("critique task: set `constitution` (a TOML file) or `constitution_rules`")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"critique task: constitution file {path!r} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"critique task: constitution {path!r} is not valid TOML: {e}") from None
    out = [str(r) for r in data.get("rules", [])]
    out += [str(r["text"]) for r in data.get("rule", []) if isinstance(r, dict) and "text" in r]
    if not out:
        raise ValueError(f"critique task: constitution {path!r} has no `rules = [...]` or [[rule]] text entries")
    return out


@dataclass
class Task:
    """A template plus its options; builds conversations and parses completions."""

    template: Template
    max_chars: int = 3000
    rules: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.template.name

    @property
    def template_hash(self) -> str:
        return self.template.hash({"max_chars": self.max_chars, "rules": self.rules})

    def conversation(self, text: str) -> Conversation:
        fields = {"text": text[: self.max_chars]}
        if self.name == "critique":
            fields["rules"] = "\n".join(f"{i + 1}. {r}" for i, r in enumerate(self.rules))
        conv = [{"role": "system", "content": self.template.system}]
        for user, assistant in self.template.examples:
            conv += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        conv.append({"role": "user", "content": self.template.user.format(**fields)})
        return conv

    def parse(self, completion: str, seed_text: str) -> dict[str, Any]:
        """Fields for the output row; ``_drop`` names why a completion is unusable."""
        text = completion.strip()
        if not text:
            return {"_drop": "synth.empty"}
        if self.name == "rewrite":
            return {"text": text}
        if self.name == "qa":
            return parse_qa(text, seed_text)
        if self.name == "reasoning":
            return parse_reasoning(text)
        if self.name == "critique":
            return parse_critique(text, seed_text)
        raise ValueError(self.name)


_Q = re.compile(r"question\s*[:：]\s*(.+?)\s*(?:\n\s*)*answer\s*[:：]\s*(.+)", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset("a an and are as at be by for from has have in is it its of on or that the this to was were with".split())


def grounding(answer: str, document: str) -> float:
    """Fraction of the answer's content words (not stopwords) that occur in the document."""
    words = [w for w in _WORD.findall(answer.casefold()) if w not in _STOP]
    if not words:
        return 0.0
    doc = set(_WORD.findall(document.casefold()))
    return sum(w in doc for w in words) / len(words)


def parse_qa(text: str, seed_text: str) -> dict[str, Any]:
    m = _Q.search(text)
    if not m:
        return {"_drop": "synth.unparseable"}
    q = m.group(1).strip()
    a = re.split(r"\n\s*\n|\nQuestion", m.group(2).strip())[0].strip()  # the answer's first paragraph
    if not q or not a:
        return {"_drop": "synth.unparseable"}
    return {"text": f"Question: {q}\nAnswer: {a}", "synth.question": q, "synth.answer": a,
            "synth.grounding": round(grounding(a, seed_text), 4)}


_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"^\W*answer\W*[:：]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_reasoning(text: str) -> dict[str, Any]:
    """The last fenced Python block is the program; the last ``Answer:`` line after it the answer."""
    blocks = list(_CODE.finditer(text))
    if not blocks:
        return {"_drop": "synth.unparseable", "synth.reason": "no ```python block"}
    last = blocks[-1]
    program = last.group(1)
    answers = _ANSWER.findall(text[last.end():]) or _ANSWER.findall(text)
    if not answers:
        return {"_drop": "synth.unparseable", "synth.reason": "no `Answer:` line"}
    answer = answers[-1].strip().strip("*`$ .").strip()
    return {"text": text, "synth.program": program, "synth.answer": answer}


_CRIT = re.compile(r"critique\s*[:：]\s*(.+?)\s*rewrite\s*[:：]\s*(.+)", re.IGNORECASE | re.DOTALL)


def parse_critique(text: str, seed_text: str) -> dict[str, Any]:
    m = _CRIT.search(text)
    if not m or not m.group(2).strip():
        return {"_drop": "synth.unparseable"}
    return {"text": m.group(2).strip(), "synth.critique": m.group(1).strip(), "synth.original": seed_text}


def make_task(name: str, max_chars: int = 3000, constitution: str | None = None,
              constitution_rules: list[str] | None = None) -> Task:
    if name not in TEMPLATES:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TEMPLATES)}")
    rules = load_constitution(constitution, constitution_rules) if name == "critique" else []
    return Task(TEMPLATES[name], max_chars=max_chars, rules=rules)
