"""The plan's record: one Choice per decision (its value, who made it, why) and the numbers it planned."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GIVEN, CHOSEN, DETECTED = "given", "chosen", "detected"


@dataclass
class Choice:
    name: str  # what was decided, e.g. "method"
    value: str  # as the table shows it
    source: str  # given (a flag or the YAML), chosen (by the plan) or detected (read off the machine)
    reason: str  # one line
    flag: str = ""  # the flag that overrides it


@dataclass
class JointPlan:
    choices: list[Choice] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # "section.field" -> value the plan sets on the run config
    flops: dict = field(default_factory=dict)  # planned FLOPs by ledger phase (selection, train, eval, inference)
    memory: dict = field(default_factory=dict)  # planned bytes: total and by term, and the budget
    numbers: dict = field(default_factory=dict)  # what the choices rest on (costs of one evaluation, one step, ...)
    seconds: dict = field(default_factory=dict)  # planned seconds by ledger phase (and "plan": the probe), with a
    # time budget

    def add(self, name: str, value: str, source: str, reason: str, flag: str = "") -> Choice:
        c = Choice(name, str(value), source, " ".join(str(reason).split()), flag)
        self.choices.append(c)
        return c

    def get(self, name: str) -> Choice | None:
        return next((c for c in self.choices if c.name == name), None)

    def to_json(self) -> dict:
        return {"choices": [asdict(c) for c in self.choices], "config": self.config, "planned_flops": self.flops,
                "planned_memory": self.memory, "numbers": self.numbers,
                "planned_seconds": self.seconds}


def given_fields(args) -> set[str]:
    """'section.field' for every config flag the user gave on this command line (the others may be chosen)."""
    out = set()
    for dest, value in vars(args).items():
        if dest.startswith("cfg__") and value is not None:
            section, _, name = dest[len("cfg__"):].partition("__")
            out.add(f"{section}.{name}" if section else name)
    return out


def fields_of(d: dict, prefix: str = "") -> set[str]:
    """'section.field' for every field a YAML mapping sets (the given part of a config file)."""
    out = set()
    for k, v in (d or {}).items():
        if isinstance(v, dict) and k in ("model", "data", "train", "budget"):
            out |= {f"{k}.{f}" for f in v}
        else:
            out.add(prefix + k)
    return out
