"""The Python SNMP bot's slug of a `{$N}` value, for tests/parity_slug.rs.

    slug.py            reads JSON lines of strings on stdin and writes one JSON
                       line per string on stdout: the slug, exactly as
                       grafolean-snmp-bot's snmpbot.py makes it with
                       python-slugify 4.0.0 and text-unidecode 1.3
                       (tests/python/requirements.txt).
    slug.py --tables   prints src/slug/tables.rs, the tables the Rust slug
                       takes from this Python: HTML 4's entity names
                       (html.entities.name2codepoint) and Unicode's decimal
                       digits (`\\d` in a str pattern, `int()`'s digits).
"""
import json
import sys
import unicodedata
from html.entities import name2codepoint

from slugify import slugify


def slug(text):
    # snmpbot.py, _construct_output_path
    return slugify(text, regex_pattern=r'[^0-9a-zA-Z_-]+', lowercase=False)


def tables():
    out = [
        "//! Tables the slug takes from the Python that runs python-slugify, made by",
        "//! `tests/python/slug.py --tables` (Python {}, Unicode {}); the".format(
            '.'.join(map(str, sys.version_info[:3])), unicodedata.unidata_version),
        "//! differential test checks that they still agree.",
        "",
        "/// HTML 4's character entity names and their code points",
        "/// (`html.entities.name2codepoint`), sorted by name.",
        "pub(super) static HTML_ENTITIES: [(&str, u32); {}] = [".format(len(name2codepoint)),
    ]
    for name, cp in sorted(name2codepoint.items()):
        out.append('    ("{}", 0x{:04X}),'.format(name, cp))
    out.append("];")
    zeros = [cp for cp in range(sys.maxunicode + 1)
             if unicodedata.category(chr(cp)) == 'Nd' and unicodedata.decimal(chr(cp)) == 0]
    # Every decimal digit is one of a run of ten from a zero.
    assert all(unicodedata.decimal(chr(z + d), -1) == d for z in zeros for d in range(10))
    assert sum(1 for cp in range(sys.maxunicode + 1) if chr(cp).isdecimal()) == 10 * len(zeros)
    out += [
        "",
        "/// The zero of every run of ten decimal digits (category Nd: what `\\d`",
        "/// matches in a str pattern, and what `int()` reads), ascending.",
        "pub(super) static DIGIT_ZEROS: [u32; {}] = [".format(len(zeros)),
    ]
    for i in range(0, len(zeros), 8):
        out.append("    " + " ".join("0x{:04X},".format(z) for z in zeros[i:i + 8]))
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    if sys.argv[1:] == ['--tables']:
        sys.stdout.write(tables())
        return
    # Bytes in and ASCII out, whatever the locale.
    out = sys.stdout
    for line in sys.stdin.buffer:
        out.write(json.dumps(slug(json.loads(line.decode('utf-8')))))
        out.write('\n')
    out.flush()


if __name__ == '__main__':
    main()
