"""One error type for bad user input: the CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Input the user can fix. The message names the file/field/value and the fix, on one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Infeasible(UserError):
    """A plan that cannot fit the given resources (exit 1: the input is valid, the answer is 'no')."""

    exit_code = 1
