"""Organization names: plain text, one home for the rule (services validate with it, the OpenAPI
schema declares it as the name's ``pattern``) and for showing a name inertly in emails.

An organization's name travels in the platform's emails (invitations). So it may not hold what a
mail client turns into a link or what breaks a line or hides text: control characters (C0, DEL,
C1), line and paragraph separators, invisible format characters (zero-width, bidi overrides, soft
hyphen, BOM), lone surrogates; and a dot or colon (``.`` ``:`` and the ideographic and full-width
dots that IDNs accept) only at the end of a word — followed by white space or the end — so
``Acme Inc.`` and ``J. P. Morgan`` pass while ``evil.example``, ``www.x``, ``https://…`` and
``mailto:…`` do not. At least one character must not be white space.
"""

from __future__ import annotations

import re

# Characters an organization name may never hold (lone surrogates, which JSON can carry but no
# regular-expression engine of the schema's validators can name, are refused by the code).
_FORBIDDEN = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e"
    "\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb"
)
# Dots and the colon: only at the end of a word.
_SEPARATORS = ".:\\u3002\\uff0e\\uff61"
# Spaces (Unicode Zs), spelled out: `\s` means different sets in Python, ECMA-262 and re.ASCII.
_SPACES = " \\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"
_PLAIN = f"[^{_FORBIDDEN}{_SEPARATORS}]"
_WORD_END = f"[{_SEPARATORS}](?:[{_SPACES}]|$)"
_VISIBLE = f"[^{_SPACES}{_FORBIDDEN}{_SEPARATORS}]"
#: The rule, as a regular expression valid in Python and in ECMA-262 (JSON Schema ``pattern``).
ORGANIZATION_NAME_PATTERN = f"^(?:{_PLAIN}|{_WORD_END})*(?:{_VISIBLE}|{_WORD_END})(?:{_PLAIN}|{_WORD_END})*$"
ORGANIZATION_NAME_HELP = (
    "Plain text: no control characters, line breaks or invisible characters, and a dot or colon only "
    "at the end of a word (no web or email addresses, no domain names)."
)
_NAME_RE = re.compile(ORGANIZATION_NAME_PATTERN)
_FORBIDDEN_RE = re.compile(f"[{_FORBIDDEN}]")
_LINKISH = re.compile(f"[{_SEPARATORS}](?!\\s|$)")


def organization_name_error(name: str) -> str | None:
    """Why ``name`` (as sent, before trimming) is not a valid organization name, or None."""
    if not name.strip():
        return "must not be blank"
    if _FORBIDDEN_RE.search(name) or any("\ud800" <= ch <= "\udfff" for ch in name):  # + lone surrogates
        return "must not contain control characters, line breaks or invisible characters"
    if _NAME_RE.fullmatch(name) is None:
        return "must not contain a web address, email address or domain name (a dot or colon inside a word)"
    return None


def inert_name(name: str) -> str:
    """``name`` as emails show it: one line of plain text no mail client turns into a link (forbidden
    characters become spaces; a dot or colon inside a word is defanged as ``[.]`` / ``[:]``). Names
    stored before the rule, or by an operator, are disarmed the same way."""
    text = " ".join(_FORBIDDEN_RE.sub(" ", name).split())[:200]
    text = _LINKISH.sub(lambda m: f"[{m.group(0)}]", text)
    return text or "(unnamed)"
