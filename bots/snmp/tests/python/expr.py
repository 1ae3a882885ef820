"""mathjspy 0.0.9, as the Python SNMP bot calls it, for tests/parity_expr.rs.

Reads JSON lines {"e": expression, "v": [values of $1, $2, ...]} on stdin and
writes one JSON line per input: {"kind": "int"|"float"|"bool"|"other",
"value": repr of the result (a string: floats may be inf or nan), "error":
the exception's type and text or null, "zero_div": whether mathjspy caught a
ZeroDivisionError on the way}.

As snmpbot.py (grafolean-snmp-bot 274b747, _apply_expression_to_results):
a new MathJS() per row, and `$N` set to float(value) only when the text
holds "$N". mathjspy does `from numpy import irr`, which numpy dropped in
1.20: numpy-financial's irr (the same function, moved) is put in its place.
"""
import json
import sys

import numpy
import numpy_financial

numpy.irr = numpy_financial.irr

from mathjspy import MathJS  # noqa: E402
from mathjspy import constants  # noqa: E402

caught = [False]


def noting(f):
    # mathjspy catches ZeroDivisionError around each function call and
    # gives 0: note that it happened, and let it catch it.
    def wrapper(*args):
        try:
            return f(*args)
        except ZeroDivisionError:
            caught[0] = True
            raise

    return wrapper


for name in list(constants.FUNCTION_MAP):
    constants.FUNCTION_MAP[name] = noting(constants.FUNCTION_MAP[name])

for line in sys.stdin:
    case = json.loads(line)
    expression, values = case["e"], case["v"]
    caught[0] = False
    out = {"kind": "other", "value": None, "error": None}
    try:
        mjs = MathJS()
        for i, v in enumerate(values):
            var_name = f"${i + 1}"
            if var_name in expression:
                mjs.set(var_name, float(v))
        value = mjs.eval(expression)
        out["value"] = repr(value)
        if isinstance(value, bool):
            out["kind"] = "bool"
        elif isinstance(value, int):
            out["kind"] = "int"
        elif isinstance(value, float):
            out["kind"] = "float"
    except Exception as e:  # what the bot's job would have raised
        out["error"] = f"{type(e).__name__}: {e}"
    out["zero_div"] = caught[0]
    print(json.dumps(out))
