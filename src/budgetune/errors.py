"""One error type for bad user input: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Input the user can fix. The message names the file/field/value and the fix, on one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Infeasible(UserError):
    """A plan that cannot fit the given resources (exit 1: the input is valid, the answer is 'no')."""

    exit_code = 1


def close_matches(word: str, choices, n: int = 4) -> str:
    """'did you mean a, b?' with the closest few of a long list, or '' when none is close."""
    import difflib

    near = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
    return f"did you mean {', '.join(near)}?" if near else ""


def check_number(value, flag: str, *, minimum=None, maximum=None, above=None) -> None:
    """A numeric flag finite and in range (`above`: strictly greater), or a one-line UserError naming it."""
    import math

    if value is None:
        return
    if not math.isfinite(value):
        raise UserError(f"{flag} is {value}; give a finite number")
    if above is not None and not value > above:
        raise UserError(f"{flag} is {value}; it must be above {above}")
    if minimum is not None and value < minimum:
        raise UserError(f"{flag} is {value}; it must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise UserError(f"{flag} is {value}; it must be at most {maximum}")
