//! The slug of a `{$N}` value in an output path, exactly as the Python bot
//! makes it: `slugify(v.value, regex_pattern=r'[^0-9a-zA-Z_-]+',
//! lowercase=False)` with python-slugify 4.0.0 and text-unidecode 1.3, the
//! versions its lock file pins. `tests/parity_slug.rs` checks it against
//! those libraries: 12,000 generated strings and every code point, 0
//! differences.
//!
//! python-slugify's steps, in its order, for these arguments:
//!
//! 1. every run of `'` becomes `-`;
//! 2. text-unidecode transliterates each character to ASCII: U+0001–U+FFFF
//!    by its table, NUL stays, and anything above U+FFFF (emoji) is dropped
//!    without a trace (`a😀b` → `ab`);
//! 3. HTML 4 entities (`&amp;`, `&eacute;`), then 4. decimal (`&#233;`), then
//!    5. hexadecimal references (`&#xE9;`) are decoded, each pass over the
//!    previous one's output (`&amp;#65;` → `&#65;` → `A`). A pass in which one
//!    reference is not a code point (`&#1114112;`, or over 4,300 decimal
//!    digits, which Python's `int()` refuses) decodes nothing at all. These run
//!    after the transliteration, so what they decode is not transliterated:
//!    6. NFKD alone brings it to ASCII where it can (`&eacute;` → `e` and a
//!    combining accent, which becomes a separator; `&#xFB01;` → `fi`);
//! 7. `'` is removed (one made by steps 2–6: `ь` → `'` → nothing; a literal
//!    one was a `-` since step 1);
//! 8. a `,` between two digits is removed (`1,2` → `12`);
//! 9. every run of characters outside `[0-9a-zA-Z_-]` becomes `-`;
//! 10. runs of `-` become one, and `-` is stripped from both ends.
//!
//! The usual text (no `&`) goes through steps 1, 2 and 7–10 in one pass
//! straight into the output, with no allocation; a text with an `&` goes
//! through every step, with a few buffers.
//!
//! **Transliteration: text-unidecode's own table.** The maintained crates
//! disagree with it too often to patch: deunicode 1.6 gives another answer
//! for 15,335 of the 65,535 code points text-unidecode covers (other pinyin
//! for CJK, names for symbols that text-unidecode drops, `[?]` replaced),
//! any_ascii 0.3 for 57,852. So `slug/text_unidecode/data.bin` is
//! text-unidecode 1.3's data file, byte for byte (311 kB in the binary; its
//! index, 256 kB, is built on the first non-ASCII character). text-unidecode is
//! free software under the GPL or the Artistic License; this file is
//! redistributed verbatim under the Artistic License, whose text and the
//! attribution are beside it.
//!
//! **NFKD: the `unicode-normalization` crate**, which follows a newer
//! Unicode (18) than the reference's Python 3.11 (14): the code points it
//! decomposes to an ASCII letter or digit that Unicode 14 does not have yet
//! are left whole here, as Python leaves them. (The Python bot's own image
//! ran Python 3.6, Unicode 10, which differs from 3.11 for a few more such
//! code points, reachable only through a numeric reference.) Python's `\d`
//! and `int()` read every Unicode decimal digit (`&#x&#1633;;` → `&#x١;` →
//! U+0001): `slug/tables.rs` has their zeros and the HTML 4 entity names,
//! printed by `tests/python/slug.py --tables`.

use std::sync::LazyLock;

use unicode_normalization::char::decompose_compatible;

mod tables;

use tables::{DIGIT_ZEROS, HTML_ENTITIES};

/// The Python bot's slug of `text` (see the module's docs).
///
/// ```
/// use grafolean_snmp_bot::slug::slugify;
/// assert_eq!(slugify("Core 6"), "Core-6");
/// assert_eq!(slugify("asdf.QWER"), "asdf-QWER");
/// assert_eq!(slugify("  eth0: up! "), "eth0-up");
/// assert_eq!(slugify("Température"), "Temperature");
/// assert_eq!(slugify("1,2"), "12");
/// assert_eq!(slugify("R&amp;D"), "R-D");
/// ```
pub fn slugify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    slugify_into(text, &mut out);
    out
}

/// [`slugify`], appended to `out`.
///
/// ```
/// use grafolean_snmp_bot::slug::slugify_into;
/// let mut path = String::from("if.");
/// slugify_into("Gi0/1 (uplink)", &mut path);
/// assert_eq!(path, "if.Gi0-1-uplink");
/// ```
pub fn slugify_into(text: &str, out: &mut String) {
    let start = out.len();
    if !plain(text, &mut Words::new(out)) {
        out.truncate(start);
        with_references(text, &mut Words::new(out));
    }
}

/// Steps 1, 2 and 7–10 for a text without references; `false` as soon as
/// an `&` appears, with part of the slug in `out`.
fn plain(text: &str, words: &mut Words) -> bool {
    for c in text.chars() {
        match c {
            '&' => return false,
            '\'' => words.push('-'),
            c if c.is_ascii() => words.push(c),
            c => {
                for b in transliteration(c).bytes() {
                    if b == b'&' {
                        return false;
                    }
                    words.push(char::from(b));
                }
            }
        }
    }
    true
}

/// Every step, for a text with an `&` (in it or in its transliteration).
fn with_references(text: &str, words: &mut Words) {
    let mut ascii = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\'' => ascii.push('-'),
            c if c.is_ascii() => ascii.push(c),
            c => ascii.push_str(transliteration(c)),
        }
    }
    let decoded = numeric_references(&numeric_references(&entities(&ascii), false), true);
    for c in decoded.chars() {
        if c.is_ascii() || unknown_to_python(c) {
            words.push(c);
        } else {
            decompose_compatible(c, |d| words.push(d));
        }
    }
}

/// Steps 7–10, one character at a time, into the output.
struct Words<'a> {
    out: &'a mut String,
    /// Where this slug starts in `out`.
    start: usize,
    /// A separator since the last word character.
    gap: bool,
    /// The last character (not counting `'`) was a digit.
    after_digit: bool,
    /// A `,` after a digit: removed if a digit follows, else a separator.
    comma: bool,
}

impl<'a> Words<'a> {
    fn new(out: &'a mut String) -> Self {
        Self {
            start: out.len(),
            out,
            gap: false,
            after_digit: false,
            comma: false,
        }
    }

    fn push(&mut self, c: char) {
        if c == '\'' {
            return;
        }
        let digit = c.is_ascii_digit();
        if std::mem::take(&mut self.comma) && !digit {
            self.gap = true;
        }
        if c == ',' && self.after_digit {
            self.comma = true;
            self.after_digit = false;
            return;
        }
        self.after_digit = digit;
        if c.is_ascii_alphanumeric() || c == '_' {
            if self.gap && self.out.len() > self.start {
                self.out.push('-');
            }
            self.gap = false;
            self.out.push(c);
        } else {
            self.gap = true;
        }
    }
}

/// text-unidecode 1.3's `data.bin`: the transliterations of U+0001 to
/// U+FFFF in order, NUL-separated.
static TEXT_UNIDECODE: &[u8] = include_bytes!("slug/text_unidecode/data.bin");

/// [`TEXT_UNIDECODE`] with the start of each entry, and its end + 1 last.
struct Table {
    text: &'static str,
    starts: Box<[u32]>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let text = std::str::from_utf8(TEXT_UNIDECODE).expect("text-unidecode's table is UTF-8");
    let mut starts = Vec::with_capacity(0x10000);
    starts.push(0);
    starts.extend(
        (0..text.len())
            .filter(|&i| text.as_bytes()[i] == 0)
            .map(|i| i as u32 + 1),
    );
    starts.push(text.len() as u32 + 1);
    Table {
        text,
        starts: starts.into_boxed_slice(),
    }
});

/// text-unidecode's ASCII for a non-ASCII character: `""` above U+FFFF.
fn transliteration(c: char) -> &'static str {
    let table = &*TABLE;
    let entry = c as usize - 1;
    match (table.starts.get(entry), table.starts.get(entry + 1)) {
        (Some(&from), Some(&to)) => &table.text[from as usize..to as usize - 1],
        _ => "",
    }
}

/// Step 3: `&name;` for HTML 4's 252 names.
fn entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        let after = &rest[at + 1..];
        // The longest name is 8 bytes; looking no further keeps it linear.
        let name = after.as_bytes().iter().take(9).position(|&b| b == b';');
        let found = name.and_then(|end| {
            HTML_ENTITIES
                .binary_search_by(|(e, _)| (*e).cmp(&after[..end]))
                .ok()
                .map(|i| (end, HTML_ENTITIES[i].1))
        });
        match found.and_then(|(end, cp)| Some((end, char::from_u32(cp)?))) {
            Some((end, c)) => {
                out.push_str(&rest[..at]);
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[..=at]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a decoded surrogate (`&#xD800;`, a lone surrogate in Python) is
/// here: like it, a separator that no later step changes.
const SURROGATE: char = '\u{FFFD}';

/// Python's `int()` refuses a decimal number of more digits (3.11).
const MAX_DECIMAL_DIGITS: usize = 4300;

/// Steps 4 (`&#233;`) and 5 (`&#xE9;`, when `hex`): all of the text's
/// references, or none if one is not a code point.
fn numeric_references(text: &str, hex: bool) -> String {
    let (opening, radix) = if hex { ("&#x", 16) } else { ("&#", 10) };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(opening) {
        let after = &rest[at + opening.len()..];
        let (mut value, mut digits, mut end) = (0u32, 0usize, after.len());
        for (i, c) in after.char_indices() {
            match digit_value(c, hex) {
                Some(d) => {
                    value = value.saturating_mul(radix).saturating_add(d);
                    digits += 1;
                }
                None => {
                    end = i;
                    break;
                }
            }
        }
        if digits > 0 && after[end..].starts_with(';') {
            if value > u32::from(char::MAX) || (!hex && digits > MAX_DECIMAL_DIGITS) {
                return text.to_string();
            }
            out.push_str(&rest[..at]);
            out.push(char::from_u32(value).unwrap_or(SURROGATE));
            rest = &after[end + 1..];
        } else {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// A digit as Python's `\d` (and `[\da-fA-F]`) and `int()` read it.
fn digit_value(c: char, hex: bool) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        'a'..='f' if hex => Some(c as u32 - 'a' as u32 + 10),
        'A'..='F' if hex => Some(c as u32 - 'A' as u32 + 10),
        c if !c.is_ascii() => {
            let cp = c as u32;
            let zero = DIGIT_ZEROS[..DIGIT_ZEROS.partition_point(|&z| z <= cp)].last()?;
            (cp - zero < 10).then_some(cp - zero)
        }
        _ => None,
    }
}

/// Code points that Python 3.11's Unicode 14 does not have, but that
/// `unicode-normalization` (Unicode 18) decomposes to ASCII letters or
/// digits: subscript w, y, z; modifier capital S; outlined A–Z and 0–9.
fn unknown_to_python(c: char) -> bool {
    matches!(c, '\u{209D}'..='\u{209F}' | '\u{A7F1}' | '\u{1CCD6}'..='\u{1CCF9}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each checked against python-slugify 4.0.0 by hand.
    #[test]
    fn known_cases() {
        for (text, slug) in [
            ("Température", "Temperature"),
            ("1,2", "12"),
            ("&amp;", ""),
            ("Core 6", "Core-6"),
            ("asdf.QWER", "asdf-QWER"),
            ("", ""),
            ("-x-", "x"),
            ("a--b", "a-b"),
            ("a_b", "a_b"),
            ("1,,2", "1-2"),
            ("12,345,678", "12345678"),
            ("1,a", "1-a"),
            ("obj'ekt", "obj-ekt"),
            ("объект", "obekt"),
            ("1&#39;,2", "12"),
            ("a😀b", "ab"),
            ("a\0b", "a-b"),
            ("&eacute;", "e"),
            ("&nbsp;x", "x"),
            ("＆amp;", ""),
            ("&amp;#65;", "A"),
            ("&#38;#x41;", "A"),
            ("&#x&#1633;;", ""),
            ("&#65;&#9999999;", "65-9999999"),
            ("&#65;&#x110000;", "A-x110000"),
            ("&#x41;&#x110000;", "x41-x110000"),
            ("&#xD800;x", "x"),
            ("&#x1CCD6;", ""),
            // UTF-8 `é` read as Latin-1, as easysnmp reads an OCTET STRING.
            ("TempÃ©rature", "TempA-c-rature"),
        ] {
            assert_eq!(slugify(text), slug, "{text:?}");
        }
    }

    #[test]
    fn decimal_digits_over_python_int_limit_decode_nothing() {
        let at_limit = format!("&#{}65;", "0".repeat(MAX_DECIMAL_DIGITS - 2));
        assert_eq!(slugify(&at_limit), "A");
        let over = format!("&#{}65;", "0".repeat(MAX_DECIMAL_DIGITS - 1));
        assert_eq!(slugify(&over), over[2..over.len() - 1]);
        let hex = format!("&#x{}41;", "0".repeat(2 * MAX_DECIMAL_DIGITS));
        assert_eq!(slugify(&hex), "A");
    }

    #[test]
    fn appends_after_what_is_there() {
        let mut out = String::from("x.");
        slugify_into(" -a&amp;b- ", &mut out);
        assert_eq!(out, "x.a-b");
        let mut out = String::from("x.");
        slugify_into("&amp;", &mut out);
        assert_eq!(out, "x.");
    }

    #[test]
    fn text_unidecode_table_is_whole() {
        assert!(TEXT_UNIDECODE.is_ascii());
        assert_eq!(TABLE.starts.len(), 0xFFFF + 1);
        assert_eq!(transliteration('é'), "e");
        assert_eq!(transliteration('\u{FFFF}'), "");
        assert_eq!(transliteration('😀'), "");
        // text-unidecode's table is the identity on ASCII, which `plain`
        // and `with_references` take without it.
        for c in '\u{1}'..='\u{7F}' {
            let (from, to) = (TABLE.starts[c as usize - 1], TABLE.starts[c as usize]);
            assert_eq!(&TABLE.text[from as usize..to as usize - 1], c.to_string());
        }
    }

    #[test]
    fn digits() {
        assert_eq!(digit_value('7', false), Some(7));
        assert_eq!(digit_value('f', false), None);
        assert_eq!(digit_value('F', true), Some(15));
        assert_eq!(digit_value('١', false), Some(1));
        assert_eq!(digit_value('𝟗', true), Some(9));
        assert_eq!(digit_value('²', false), None);
    }
}
