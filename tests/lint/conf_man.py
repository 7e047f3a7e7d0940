#!/usr/bin/env python3
"""Check man/pochta.conf.5 against the parameter tables in lib/.

Every parameter declared in a lib/conf_params_<group>.c table must be listed
in the PARAMETERS section of man/pochta.conf.5, in the subsection of its
group, with its type, bounds, default and description exactly as the table
says; the page may list nothing that is not declared. The section between
the lines

    .\\" BEGIN GENERATED PARAMETERS
    .\\" END GENERATED PARAMETERS

is generated from the tables. After adding or changing a parameter, run

    python3 tests/lint/conf_man.py --write     # rewrite that section
    python3 tests/lint/conf_man.py --print     # or just print it

and review the diff. Without options the script checks, prints what is wrong
and exits 1 if anything is. It also checks that every setting in the
sample conf/pochta.conf, commented out ("#name = value") or not, names a
declared parameter, so uncommenting one never breaks the file.

Defaults that are C macros (POCHTA_LIBEXECDIR) are shown as the Makefile
defines them for PREFIX=/usr/local.
"""
import glob
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
PAGE = os.path.join(TOP, "man", "pochta.conf.5")
BEGIN = '.\\" BEGIN GENERATED PARAMETERS'
END = '.\\" END GENERATED PARAMETERS'

TYPES = {
    "CONF_STR": "string",
    "CONF_INT": "integer",
    "CONF_BOOL": "boolean",
    "CONF_TIME": "time",
    "CONF_SIZE": "size",
    "CONF_LIST": "list",
}

C_STRING = r'"(?:[^"\\\n]|\\.)*"'
ROW = re.compile(
    r'\{\s*"([A-Za-z0-9_]+)"\s*,\s*(CONF_[A-Z]+)\s*,\s*'
    r'((?:' + C_STRING + r'\s*)+|[A-Za-z_][A-Za-z0-9_]*)\s*,\s*'
    r'([^,{}]+?)\s*,\s*([^,{}]+?)\s*,\s*'
    r'((?:' + C_STRING + r'\s*)+)\}')
GROUPS = re.compile(r'\{\s*"([^"]+)"\s*,\s*(conf_params_[a-z0-9_]+)\s*\}')


def c_string(text):
    """The value of one or more adjacent C string literals."""
    parts = re.findall(C_STRING, text)
    s = "".join(p[1:-1] for p in parts)
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(
        m.group(1), m.group(1)), s)


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', " ", text, flags=re.S)
    return re.sub(r'//[^\n]*', " ", text)


def makefile_macros():
    """POCHTA_<X>DIR as the Makefile defines it by default."""
    vals = {}
    with open(os.path.join(TOP, "Makefile")) as f:
        for line in f:
            m = re.match(r'^([A-Z]+)\s*\?=\s*(.*?)\s*$', line)
            if m:
                vals[m.group(1)] = m.group(2)

    def expand(v, depth=0):
        if depth > 10:
            return v
        return re.sub(r'\$\((\w+)\)',
                      lambda m: expand(vals.get(m.group(1), ""), depth + 1),
                      v)
    return {"POCHTA_" + k: expand(v) for k, v in vals.items()
            if k.endswith("DIR")}


def number(expr):
    """A bound as a number, if it is plain arithmetic; else None."""
    expr = expr.strip()
    expr = re.sub(r'(\d+)[LlUu]+\b', r'\1', expr)
    if re.fullmatch(r'[\d\s*+()-]+', expr):
        return eval(expr)  # digits and operators only
    return None


def read_tables():
    """[(group, file, [param dict...])] in conf_param_groups order."""
    with open(os.path.join(TOP, "lib", "conf_params.c")) as f:
        order = GROUPS.findall(strip_comments(f.read()))
    macros = makefile_macros()
    tables = []
    problems = []
    for group, var in order:
        path = os.path.join(TOP, "lib", var + ".c")
        rel = os.path.relpath(path, TOP)
        if not os.path.exists(path):
            problems.append(f"{rel}: missing (named in lib/conf_params.c)")
            continue
        with open(path) as f:
            text = strip_comments(f.read())
        params = []
        for m in ROW.finditer(text):
            name, ctype, deftext, lo, hi, desc = m.groups()
            if deftext.startswith('"'):
                default = c_string(deftext)
            elif deftext in macros:
                default = macros[deftext]
            else:
                problems.append(f"{rel}: {name}: default {deftext} is "
                                "neither a string nor a Makefile directory")
                default = deftext
            params.append({
                "name": name, "type": TYPES.get(ctype, ctype),
                "ctype": ctype, "default": default,
                "min": number(lo) if number(lo) is not None else lo.strip(),
                "max": number(hi) if number(hi) is not None else hi.strip(),
                "desc": c_string(desc), "file": rel,
            })
        # A row the pattern missed would go unchecked: count the rows.
        rows = len(re.findall(r'\{\s*"[A-Za-z0-9_]+"\s*,\s*CONF_', text))
        if rows != len(params):
            problems.append(f"{rel}: {rows - len(params)} row(s) this "
                            "script cannot parse; keep the shape "
                            '{"name", CONF_X, "default", min, max, '
                            '"description"}')
        tables.append((group, rel, params))
    seen = {}
    for group, rel, params in tables:
        for p in params:
            if p["name"] in seen:
                problems.append(f"{rel}: {p['name']} is also declared in "
                                f"{seen[p['name']]}")
            seen[p["name"]] = rel
    return tables, problems


def esc(s):
    """Text safe inside an mdoc line (not at its start)."""
    return s.replace("\\", "\\e")


def quoted(s):
    return '"' + esc(s).replace('"', '""') + '"'


def bound_text(p, v):
    if p["type"] == "time" and isinstance(v, int):
        return f"{v}s"
    return str(v)


def item(p):
    """The mdoc lines for one parameter."""
    kind = p["type"]
    lo, hi = p["min"], p["max"]
    if p["ctype"] in ("CONF_INT", "CONF_TIME", "CONF_SIZE"):
        if hi != 0:
            kind += f", {bound_text(p, lo)} to {bound_text(p, hi)}"
        elif lo != 0:
            kind += f", at least {bound_text(p, lo)}"
    lines = [f".It Ic {p['name']} Pq {esc(kind)}"]
    desc = p["desc"].strip()
    if desc and not desc.endswith("."):
        desc += "."
    # One sentence a line, and no line may start with a control character.
    for sentence in re.split(r'(?<=[.!?]) +(?=[A-Z])', desc):
        sentence = esc(sentence)
        if sentence[:1] in (".", "'"):
            sentence = "\\&" + sentence
        lines.append(sentence)
    if p["name"] == "config_directory":
        lines.append("Always the configuration directory.")
    elif p["default"] == "":
        lines.append("Default: empty.")
    else:
        lines.append("Default:")
        lines.append(f".Ql {quoted(p['default'])} .")
    return lines


def generate(tables):
    out = [BEGIN]
    for group, rel, params in tables:
        if not params:
            continue
        out.append(f".Ss {group} parameters")
        out.append("Declared in")
        out.append(f".Pa {rel} .")
        out.append(".Bl -tag -width Ds")
        for p in sorted(params, key=lambda p: p["name"]):
            out.extend(item(p))
        out.append(".El")
    out.append(END)
    return out


def page_section(lines):
    try:
        b = lines.index(BEGIN)
        e = lines.index(END)
    except ValueError:
        return None, None
    return b, e


def page_items(section):
    """{name: (group, [lines])} from the page's generated section."""
    items = {}
    group = None
    cur = None
    for line in section:
        m = re.match(r'^\.Ss (\S+) parameters$', line)
        if m:
            group = m.group(1)
            cur = None
            continue
        m = re.match(r'^\.It Ic (\S+)', line)
        if m:
            cur = m.group(1)
            items[cur] = (group, [line])
            continue
        if line.startswith(".El") or line.startswith(".Ss"):
            cur = None
            continue
        if cur is not None:
            items[cur][1].append(line)
    return items


def check(tables, problems):
    with open(PAGE) as f:
        lines = f.read().split("\n")
    b, e = page_section(lines)
    rel = os.path.relpath(PAGE, TOP)
    fix = "run `python3 tests/lint/conf_man.py --write`"
    if b is None or e is None or e < b:
        problems.append(f"{rel}: no '{BEGIN}' ... '{END}' section; {fix}")
        return problems
    have = page_items(lines[b + 1:e])
    declared = {}
    for group, src, params in tables:
        for p in params:
            declared[p["name"]] = (group, p)
    for name, (group, p) in sorted(declared.items()):
        if name not in have:
            problems.append(
                f"{rel}: parameter {name} ({p['file']}) is missing from "
                f"subsection \"{group} parameters\"; {fix}")
            continue
        pgroup, plines = have[name]
        want = item(p)
        if pgroup != group:
            problems.append(f"{rel}: parameter {name} is listed under "
                            f"\"{pgroup} parameters\" but declared in "
                            f"{p['file']} ({group}); {fix}")
        elif plines != want:
            def defaults(ls):
                return [l for l in ls
                        if l.startswith(("Default", ".Ql", "Always"))]
            what = "default" if defaults(plines) != defaults(want) \
                else "entry"
            problems.append(
                f"{rel}: the {what} of parameter {name} differs from "
                f"{p['file']}:\n    page:  {' | '.join(plines)}\n"
                f"    table: {' | '.join(want)}\n  {fix}")
    for name in sorted(set(have) - set(declared)):
        problems.append(f"{rel}: parameter {name} is listed but declared "
                        f"in no lib/conf_params_*.c table; {fix}")
    if not problems and lines[b:e + 1] != generate(tables):
        problems.append(f"{rel}: the generated section is out of date "
                        f"(order or headings); {fix}")
    return problems


def check_sample(tables, problems):
    path = os.path.join(TOP, "conf", "pochta.conf")
    if not os.path.exists(path):
        return problems
    declared = {p["name"] for _, _, params in tables for p in params}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            m = re.match(r'^#?([A-Za-z0-9_]+)\s*=', line)
            if m and m.group(1) not in declared:
                problems.append(f"conf/pochta.conf:{n}: {m.group(1)} is "
                                "not a declared parameter")
    return problems


def main():
    tables, problems = read_tables()
    if "--print" in sys.argv[1:]:
        print("\n".join(generate(tables)))
        return 0
    if "--write" in sys.argv[1:]:
        with open(PAGE) as f:
            lines = f.read().split("\n")
        b, e = page_section(lines)
        if b is None or e is None:
            print(f"{PAGE}: no '{BEGIN}' ... '{END}' lines to replace",
                  file=sys.stderr)
            return 1
        lines[b:e + 1] = generate(tables)
        with open(PAGE + ".tmp", "w") as f:
            f.write("\n".join(lines))
        os.replace(PAGE + ".tmp", PAGE)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    problems = check_sample(tables, check(tables, problems))
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in pochta.conf(5) or the tables")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
