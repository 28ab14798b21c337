"""Numbers as .NET writes and reads them: ``formatNumber`` (standard and custom numeric
formats), ``isFloat``/``float`` with a locale, ``isInt``.

Rounding is .NET's: half away from zero, on the decimal value the number prints as.
Locales: a small table of the common ones (decimal and group separators, currency).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .functions import text_arg
from .library import define
from .values import arg_error, fn_error, float_text, is_number

NBSP, NNBSP = "\u00a0", "\u202f"
# locale: (decimal separator, group separator, currency symbol, currency pattern (n = number), percent pattern)
LOCALES: dict[str, tuple[str, str, str, str, str]] = {
    "en-us": (".", ",", "$", "$n", "n%"),
    "en-gb": (".", ",", "£", "£n", "n%"),
    "en-ca": (".", ",", "$", "$n", "n%"),
    "en-au": (".", ",", "$", "$n", "n%"),
    "en-in": (".", ",", "₹", "₹n", "n%"),
    "de-de": (",", ".", "€", "n" + NBSP + "€", "n" + NBSP + "%"),
    "de-ch": (".", "’", "CHF", "CHF" + NBSP + "n", "n%"),
    "fr-fr": (",", NNBSP, "€", "n" + NBSP + "€", "n" + NBSP + "%"),
    "es-es": (",", ".", "€", "n" + NBSP + "€", "n" + NBSP + "%"),
    "it-it": (",", ".", "€", "n" + NBSP + "€", "n%"),
    "nl-nl": (",", ".", "€", "€" + NBSP + "n", "n%"),
    "pt-br": (",", ".", "R$", "R$" + NBSP + "n", "n%"),
    "sv-se": (",", NBSP, "kr", "n" + NBSP + "kr", "n" + NBSP + "%"),
    "da-dk": (",", ".", "kr.", "n" + NBSP + "kr.", "n" + NBSP + "%"),
    "nb-no": (",", NBSP, "kr", "n" + NBSP + "kr", "n" + NBSP + "%"),
    "is-is": (",", ".", "kr.", "n" + NBSP + "kr.", "n%"),
    "pl-pl": (",", NBSP, "zł", "n" + NBSP + "zł", "n%"),
    "ja-jp": (".", ",", "￥", "￥n", "n%"),
    "zh-cn": (".", ",", "¥", "¥n", "n%"),
    "invariant": (".", ",", "¤", "¤n", "n" + NBSP + "%"),
}


def locale_info(fn: str, locale: Any, i: int) -> tuple[str, str, str, str, str]:
    name = text_arg(fn, i, locale).strip().lower() or "en-us"
    info = LOCALES.get(name) or LOCALES.get(name.split("-")[0] + "-" + name.split("-")[0]) if name else None
    if info is None:
        info = next((v for k, v in LOCALES.items() if k.split("-")[0] == name.split("-")[0]), None)
    if info is None:
        raise fn_error(fn, f"does not know the locale '{locale}'; known: {', '.join(LOCALES)}.")
    return info


# -- reading --------------------------------------------------------------------------------
def parse_float(text: str, locale: str, fn: str) -> float | None:
    dec, group = locale_info(fn, locale, 1)[:2]
    t = text.strip()
    if t.lower() in ("nan", "infinity", "-infinity", "+infinity"):
        return float(t.lower().replace("infinity", "inf"))
    whole, sep, frac = t.partition(dec)
    whole = whole.replace(group, "")  # group separators: in the integer part only
    if group in (NBSP, NNBSP):
        whole = whole.replace(" ", "")
    t = whole + ("." if sep else "") + frac
    if len(t) > 400 or not re.fullmatch(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", t):
        return None
    return float(t)


@define("isFloat(string, locale?)", "whether the text is a floating-point number (in the locale, default en-us)",
        "string")
def is_float(text: Any, locale: Any = None) -> bool:
    if not isinstance(text, str):
        raise arg_error("isFloat", 0, "a string", text)
    return parse_float(text, text_arg("isFloat", 1, locale) or "en-us", "isFloat") is not None


@define("isInt(string)", "whether the text is an integer", "string")
def is_int(text: Any) -> bool:
    if not isinstance(text, str):
        raise arg_error("isInt", 0, "a string", text)
    t = text.strip()
    return bool(re.fullmatch(r"[-+]?[0-9]{1,19}", t)) and -2**63 <= int(t) < 2**63


# -- writing --------------------------------------------------------------------------------
def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _group(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


def _fixed(d: Decimal, places: int) -> tuple[str, str, bool]:
    """(integer digits, fraction digits, negative) of |d| rounded half away from zero."""
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP) if places < 400 else d
    neg = q < 0 and q != 0
    text = f"{abs(q):f}"
    whole, _, frac = text.partition(".")
    return whole, frac.ljust(places, "0")[:places] if places else "", neg


def _precision(spec: str, default: int) -> int:
    if spec == "":
        return default
    p = int(spec)
    if p > 1_000:
        raise fn_error("formatNumber", f"was given the precision {p:,}; at most 1,000.")
    return p


def _standard(value: Any, kind: str, spec: str, info: tuple) -> str:
    dec, group, cur, cur_pat, pct_pat = info
    k = kind.upper()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return float_text(value)
    if k in ("D", "X"):
        if not (isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral_value())):
            raise fn_error("formatNumber", f"format '{kind}{spec}' needs an integer.")
        n = int(value)
        p = _precision(spec, 0)
        if k == "D":
            return ("-" if n < 0 else "") + str(abs(n)).zfill(p)
        digits = format(n if n >= 0 else n + 2**64, "x" if kind == "x" else "X")
        return digits.zfill(p)
    d = _dec(value)
    if k in ("F", "N", "C", "P"):
        p = _precision(spec, 2)
        if k == "P":
            d = d * 100
        whole, frac, neg = _fixed(d, p)
        if k != "F":
            whole = _group(whole, group)
        num = whole + (dec + frac if p else "")
        if k == "C":
            body = cur_pat.replace("n", num)
            return "-" + body if neg else body
        if k == "P":
            body = pct_pat.replace("n", num)
            return "-" + body if neg else body
        return "-" + num if neg else num
    if k == "E":
        p = _precision(spec, 6)
        if d == 0:
            mant, exp = "0" + (dec + "0" * p if p else ""), 0
            neg = False
        else:
            neg = d < 0
            t = f"{abs(d):.{p}e}" if p < 400 else f"{abs(d):e}"
            m, _, e = t.partition("e")
            mant, exp = m.replace(".", dec), int(e)
            if p < 400:
                q = abs(d).scaleb(-abs(d).adjusted()).quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_UP)
                exp = abs(d).adjusted()
                if q >= 10:
                    q, exp = (q / 10).quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_UP), exp + 1
                mant = f"{q:f}".replace(".", dec)
        e_char = "e" if kind == "e" else "E"
        return ("-" if neg else "") + f"{mant}{e_char}{'+' if exp >= 0 else '-'}{abs(exp):03d}"
    if k in ("G", "R"):
        if spec == "" or k == "R":
            text = float_text(float(d)) if not isinstance(value, (int, Decimal)) else str(value)
        else:
            p = max(1, _precision(spec, 0))
            text = f"{d:.{p}g}" if p < 400 else str(d)
            if "e" in text:
                m, _, e = text.partition("e")
                text = f"{m}{'e' if kind == 'g' else 'E'}{e[0]}{e[1:].zfill(2)}"
        return text.replace(".", dec)
    raise fn_error("formatNumber", f"does not know the format '{kind}{spec}'.")


_STANDARD = re.compile(r"^([CcDdEeFfGgNnPpRrXx])(\d{0,9})$", re.A)


def _sections(fmt: str) -> list[str]:
    out, buf, i, quote = [], [], 0, None
    while i < len(fmt):
        c = fmt[i]
        if quote:
            buf.append(c)
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
            buf.append(c)
        elif c == "\\" and i + 1 < len(fmt):
            buf.append(fmt[i:i + 2])
            i += 1
        elif c == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf))
    return out


def _tokens(section: str) -> list[tuple[str, str]]:
    """('0'|'#'|'.'|','|'%'|'‰'|'E'|'lit', text)."""
    out, i = [], 0
    while i < len(section):
        c = section[i]
        if c in "'\"":
            j = section.find(c, i + 1)
            j = len(section) if j < 0 else j
            out.append(("lit", section[i + 1:j]))
            i = j + 1
            continue
        if c == "\\":
            out.append(("lit", section[i + 1:i + 2]))
            i += 2
            continue
        if c in "eE":
            m = re.match(r"[eE][-+]?0+", section[i:])
            if m:
                out.append(("E", m.group()))
                i += len(m.group())
                continue
        out.append((c, c) if c in "0#.,%‰" else ("lit", c))
        i += 1
    return out


def _custom(value: Any, fmt: str, info: tuple) -> str:
    dec_sep, group_sep = info[0], info[1]
    sections = _sections(fmt)
    d = _dec(value)
    section = sections[0]
    negative_section = False
    if len(sections) >= 2 and d < 0:
        section, negative_section = sections[1] or sections[0], bool(sections[1])
    toks = _tokens(section)
    if len(sections) >= 3 and d == 0:
        toks = _tokens(sections[2] or sections[0])
    point = next((i for i, t in enumerate(toks) if t[0] == "."), None)
    exp_at = next((i for i, t in enumerate(toks) if t[0] == "E"), None)
    int_toks = toks[:point] if point is not None else toks[:exp_at] if exp_at is not None else toks
    frac_end = exp_at if exp_at is not None else len(toks)
    frac_toks = toks[point + 1:frac_end] if point is not None else []
    # scaling commas: right before the point (or the end of the number part)
    digit_idx = [i for i, t in enumerate(int_toks) if t[0] in "0#"]
    scale = 0
    j = len(int_toks) - 1
    while j >= 0 and int_toks[j][0] == ",":
        scale += 1
        j -= 1
    grouping = any(t[0] == "," for t in int_toks[:j + 1]) and digit_idx and \
        any(t[0] == "," and digit_idx[0] < i < digit_idx[-1] + 1 for i, t in enumerate(int_toks[:j + 1]))
    d = d / (Decimal(1000) ** scale) if scale else d
    d = d * (Decimal(100) ** sum(1 for t in toks if t[0] == "%")) * (Decimal(1000) ** sum(1 for t in toks if t[0] == "‰"))
    frac_places = sum(1 for t in frac_toks if t[0] in "0#")
    frac_min = max((i + 1 for i, t in enumerate([t for t in frac_toks if t[0] in "0#"]) if t[0] == "0"), default=0)
    exponent = 0
    if exp_at is not None and d != 0:
        n_int = max(1, len(digit_idx))
        exponent = d.copy_abs().adjusted() - (n_int - 1)
        d = d.scaleb(-exponent)
    whole, frac, neg = _fixed(d, frac_places)
    frac = frac.rstrip("0").ljust(frac_min, "0") if frac_places else ""
    first_zero = next((k for k, i in enumerate(digit_idx) if int_toks[i][0] == "0"), None)
    min_int = len(digit_idx) - first_zero if first_zero is not None else 0
    digits = whole.lstrip("0")
    digits = digits.rjust(min_int, "0")
    # the integer part: digits into the placeholders from the right, extra ones into the first
    out_int: list[str] = []
    if grouping:
        body = _group(digits, group_sep) if digits else ""
        lead = "".join(t[1] for t in int_toks[:digit_idx[0]] if t[0] not in ",") if digit_idx else ""
        tail = "".join(t[1] for t in int_toks[digit_idx[-1] + 1:] if t[0] not in ",") if digit_idx else ""
        int_text = lead + body + tail
    else:
        rest = digits
        for k in range(len(int_toks) - 1, -1, -1):
            kind, text = int_toks[k]
            if kind in "0#":
                if k == (digit_idx[0] if digit_idx else -1):
                    out_int.append(rest)
                    rest = ""
                else:
                    out_int.append(rest[-1:] if rest else "")
                    rest = rest[:-1]
            elif kind == ",":
                continue
            else:
                out_int.append(text)
        if not digit_idx:
            out_int.append(rest)
        int_text = "".join(reversed(out_int))
    frac_text, fi = [], 0
    for kind, text in frac_toks:
        if kind in "0#":
            frac_text.append(frac[fi:fi + 1])
            fi += 1
        elif kind != ",":
            frac_text.append(text)
    frac_joined = "".join(frac_text)
    number = int_text + (dec_sep + frac_joined if frac_joined.strip() or (frac and frac_min) else "")
    if exp_at is not None:
        e = toks[exp_at][1]
        width = len(e.lstrip("eE+-"))
        sign = "-" if exponent < 0 else ("+" if "+" in e else "")
        tail_toks = toks[exp_at + 1:]
        number += e[0] + sign + str(abs(exponent)).zfill(width) + "".join(t[1] for t in tail_toks if t[0] != ",")
    # a rounded zero has no sign; a negative section writes its own
    return "-" + number if neg and not negative_section else number


@define("formatNumber(number, format, locale?)", "the number as text in a .NET numeric format (C2, N0, 0.00, "
        "#,##0.00 ...), in the locale (default en-us)", "string")
def format_number(number: Any, fmt: Any, locale: Any = None) -> str:
    if not is_number(number):
        raise arg_error("formatNumber", 0, "an integer or a decimal number", number)
    f = text_arg("formatNumber", 1, fmt)
    info = locale_info("formatNumber", locale, 2)
    if len(f) > 1_000:
        raise fn_error("formatNumber", "was given a format longer than 1,000 characters.")
    m = _STANDARD.match(f)
    try:
        if f == "":
            return _standard(number, "G", "", info)
        if m:
            return _standard(number, m[1], m[2], info)
        return _custom(number, f, info)
    except (InvalidOperation, ValueError, OverflowError):
        raise fn_error("formatNumber", f"cannot write {number!r} in the format '{f}'.") from None
