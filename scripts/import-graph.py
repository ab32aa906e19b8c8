#!/usr/bin/env python3
"""Module import graph of the cargo workspace: import circles and crate dependencies.

For every workspace member (the root Cargo.toml's [workspace] members) this reads
the .rs files under its src/ (not tests/ or benches/), derives each file's module
path from its location (src/lib.rs and src/main.rs are the crate root, src/a.rs and
src/a/mod.rs are `a`, src/a/b.rs is `a::b`; `#[path = "..."] mod x;` overrides it),
and draws an edge F -> G when F's code names module G through `crate::...`,
`super::...` or `self::...` (in `use` trees, nested braces included, or inline
paths). A referenced path maps to the longest module prefix that is a file of the
crate. It prints, per crate, the file count and the strongly connected components
of more than one file ("import circles"), the total `import circles: N`, and a
table of which workspace crates each crate's src/ names (`other_crate::...`)
against the workspace crates in its Cargo.toml [dependencies].

Comments, string and char literals are blanked before scanning; this is a lexical
approximation of rustc's name resolution, not the real thing (see --help).

Usage: scripts/import-graph.py [ROOT] [--no-tests] [--dot FILE] [--edges]
                               [--relative] [--follow-reexports]
"""

import argparse
import glob
import os
import re
import sys
from collections import defaultdict

try:
    import tomllib
except ImportError:  # Python < 3.11: a crude reader good enough for Cargo.toml
    tomllib = None


# ---------------------------------------------------------------- Cargo.toml


def read_toml(path):
    with open(path, "rb") as f:
        data = f.read()
    if tomllib is not None:
        return tomllib.loads(data.decode("utf-8"))
    return crude_toml(data.decode("utf-8"))


def crude_toml(text):
    """Just enough TOML for members lists, [package] name and dependency keys."""
    out = {}
    cur = out
    text = re.sub(r"(?m)#.*$", "", text)
    for m in re.finditer(r"(?ms)^\s*\[([^\]\n]+)\]\s*$|^\s*([A-Za-z0-9_.\-\"']+)\s*=\s*(\[.*?\]|\{[^\n]*\}|[^\n]*)$", text):
        if m.group(1):
            cur = out
            for part in m.group(1).strip().split("."):
                cur = cur.setdefault(part.strip().strip('"'), {})
            continue
        key, val = m.group(2), m.group(3).strip()
        keys = [k.strip('"') for k in key.split(".")]
        tgt = cur
        for k in keys[:-1]:
            tgt = tgt.setdefault(k, {})
        if val.startswith("["):
            tgt[keys[-1]] = re.findall(r'"([^"]*)"', val)
        elif val.startswith('"'):
            tgt[keys[-1]] = val.strip('"')
        else:
            tgt[keys[-1]] = val
    return out


def workspace_members(root):
    ws = read_toml(os.path.join(root, "Cargo.toml")).get("workspace", {})
    excluded = {os.path.normpath(os.path.join(root, e)) for e in ws.get("exclude", [])}
    members = []
    for pat in ws.get("members", []):
        for d in sorted(glob.glob(os.path.join(root, pat))) or []:
            d = os.path.normpath(d)
            if d not in excluded and os.path.isfile(os.path.join(d, "Cargo.toml")):
                members.append(d)
    return members


def dependency_names(manifest):
    """Package names of [dependencies] (and target-specific ones), not dev/build."""
    tables = [manifest.get("dependencies", {})]
    for tgt in manifest.get("target", {}).values():
        if isinstance(tgt, dict):
            tables.append(tgt.get("dependencies", {}))
    names = set()
    for table in tables:
        for key, spec in table.items():
            pkg = spec.get("package", key) if isinstance(spec, dict) else key
            names.add(pkg)
    return names


# ---------------------------------------------------------------- lexing

IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
RAW_STR = re.compile(r'(?:b|c)?r(#*)"')


def strip_source(text, keep_strings=False):
    """Blank comments (and string/char literals unless keep_strings), keep newlines."""
    out, i, n = [], 0, len(text)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "rbc" and (i == 0 or text[i - 1] not in IDENT_CHARS) and RAW_STR.match(text, i):
            m = RAW_STR.match(text, i)
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            out.append(text[i:j] if keep_strings else m.group(0) + blank(text[m.end():j - len(close)]) + close)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(text[i:j] if keep_strings else '"' + blank(text[i + 1:j - 1]) + '"')
            i = j
        elif c == "'":
            # char literal ('x', '\n', '\u{1F600}', '\'') versus lifetime/label ('a)
            if i + 1 < n and text[i + 1] == "\\":
                j = i + 3
                while j < n and text[j] != "'" and text[j] != "\n":
                    j += 1
                j += 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append(text[i:j] if keep_strings else "' '")
            i = j
        else:
            j = i + 1
            while j < n and text[j] not in "/rbc\"'":
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)


TOKEN = re.compile(r"r#([A-Za-z_][A-Za-z0-9_]*)|(\$?[A-Za-z_][A-Za-z0-9_]*)|(::)|(\S)")


def tokenize(code):
    """(token, line) pairs; raw identifiers lose their r#."""
    toks, line, pos = [], 1, 0
    for m in TOKEN.finditer(code):
        line += code.count("\n", pos, m.start())
        pos = m.start()
        toks.append((m.group(1) or m.group(2) or m.group(3) or m.group(4), line))
    return toks


def is_ident(t):
    return t is not None and (t[0].isalpha() or t[0] == "_" or t[0] == "$")


PATH_ATTR = re.compile(
    r'#\s*\[\s*path\s*=\s*"([^"]+)"\s*\]'
    r'(?:\s*#\s*\[[^\]]*\])*\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;'
)


# ---------------------------------------------------------------- per-file scan


class FileScan:
    """What one file says: mod declarations, use trees and inline paths."""

    def __init__(self):
        self.mods = []        # (context tuple, name, inline?) declared in this file
        self.refs = []        # (context tuple, segments list, line, is_use, text)
        self.bindings = []    # (name bound by `use`, first segment of its path)
        self.reexports = []   # (context, bound name, segments) for `pub use`


def parse_use_tree(toks, i, prefix, out):
    """Parse one use tree at toks[i]; append (segments, bound name, line) to out."""
    segs = list(prefix)
    n = len(toks)
    while i < n:
        t, line = toks[i]
        if t == "{":
            i += 1
            while i < n and toks[i][0] != "}":
                i = parse_use_tree(toks, i, segs, out)
                if i < n and toks[i][0] == ",":
                    i += 1
                elif i < n and toks[i][0] != "}":
                    return i  # malformed; caller skips to ';'
            return i + 1
        if t == "*":
            out.append((segs + ["*"], None, line))
            return i + 1
        if t == "::":  # leading `::` (extern path)
            segs.append("::")
            i += 1
            continue
        if is_ident(t):
            segs.append(t)
            i += 1
            if i < n and toks[i][0] == "::":
                i += 1
                continue
            bound = segs[-1] if segs[-1] != "self" else (segs[-2] if len(segs) > 1 else None)
            if i + 1 < n and toks[i][0] == "as":
                bound = toks[i + 1][0]
                i += 2
            out.append((segs, None if bound == "_" else bound, line))
            return i
        return i
    return i


def scan_file(code):
    toks = tokenize(code)
    scan = FileScan()
    n = len(toks)
    depth = 0
    inline = []  # (name, depth at which its '{' opened)
    i = 0
    while i < n:
        t, line = toks[i]
        prev = toks[i - 1][0] if i else None
        ctx = tuple(name for name, _ in inline)
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if inline and inline[-1][1] == depth:
                inline.pop()
        elif t == "mod" and prev != "::" and i + 2 < n and is_ident(toks[i + 1][0]):
            name, after = toks[i + 1][0], toks[i + 2][0]
            if after == ";":
                scan.mods.append((ctx, name, False))
                i += 3
                continue
            if after == "{":
                scan.mods.append((ctx, name, True))
                inline.append((name, depth))
                depth += 1
                i += 3
                continue
        elif t == "pub" and i + 2 < n and toks[i + 1][0] == "(" and toks[i + 2][0] == "in":
            # `pub(in crate::a)` is a visibility, not a reference
            while i < n and toks[i][0] != ")":
                i += 1
        elif t == "use" and prev != "::":
            is_pub = prev == ")" or prev == "pub"
            uses = []
            j = parse_use_tree(toks, i + 1, [], uses)
            while j < n and toks[j][0] != ";":  # recover from anything unparsed
                j += 1
            for segs, bound, uline in uses:
                if bound:
                    scan.bindings.append((bound, segs[0]))
                scan.refs.append((ctx, segs, uline, True, "use " + "::".join(segs)))
                if is_pub and bound:
                    scan.reexports.append((ctx, bound, segs))
            i = j + 1
            continue
        elif is_ident(t) and prev not in ("::", ".") and i + 2 < n and toks[i + 1][0] == "::" \
                and is_ident(toks[i + 2][0]) and t not in ("Self",):
            segs = [t]
            j = i + 1
            while j + 1 < n and toks[j][0] == "::" and is_ident(toks[j + 1][0]):
                segs.append(toks[j + 1][0])
                j += 2
            scan.refs.append((ctx, segs, line, False, "::".join(segs)))
            i = j
            continue
        elif t == "::" and prev not in IDENT_LIKE_PREV and i + 1 < n and is_ident(toks[i + 1][0]):
            # `::store::X` — an explicit extern path
            segs = ["::"]
            j = i
            while j + 1 < n and toks[j][0] == "::" and is_ident(toks[j + 1][0]):
                segs.append(toks[j + 1][0])
                j += 2
            scan.refs.append((ctx, segs, line, False, "::" + "::".join(segs[1:])))
            i = j
            continue
        i += 1
    return scan


# tokens after which `::x` continues a path rather than starting an absolute one
IDENT_LIKE_PREV = {">", ")", "]"}


# ---------------------------------------------------------------- crate model


class Crate:
    def __init__(self, root, member_dir):
        self.dir = member_dir
        self.rel = os.path.relpath(member_dir, root) or "."
        manifest = read_toml(os.path.join(member_dir, "Cargo.toml"))
        self.package = manifest.get("package", {}).get("name", os.path.basename(member_dir))
        self.lib_name = manifest.get("lib", {}).get("name", self.package).replace("-", "_")
        self.deps = dependency_names(manifest)
        self.files = []            # paths relative to the member dir, e.g. src/a/b.rs
        self.module_of = {}        # file -> (target, module tuple)
        self.file_of = {}          # (target, module tuple) -> file
        self.scans = {}
        self.edges = defaultdict(list)   # (F, G) -> [(line, text)]
        self.crate_refs = defaultdict(set)  # lib name -> files
        self.undeclared = []


def location_module(rel):
    """('lib', ('a','b')) for src/a/b.rs; src/bin/x.rs is its own target."""
    parts = rel.split("/")[1:]  # drop 'src'
    target = "lib"
    if parts[0] == "bin" and len(parts) >= 2:
        name = parts[1][:-3] if len(parts) == 2 else parts[1]
        target = "bin:" + name
        parts = parts[2:] if len(parts) > 2 else ["main.rs"]
    if parts == ["lib.rs"] or parts == ["main.rs"]:
        return target, ()
    last = parts[-1][:-3]
    mods = parts[:-1] + ([] if last == "mod" else [last])
    return target, tuple(mods)


def is_test_file(rel):
    base = os.path.basename(rel)
    return base.endswith("tests.rs") or base.endswith("testing.rs")


def load_crate(root, member_dir):
    c = Crate(root, member_dir)
    src = os.path.join(member_dir, "src")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(".rs"):
                c.files.append(os.path.relpath(os.path.join(dirpath, fn), member_dir).replace(os.sep, "/"))
    texts = {}
    for rel in c.files:
        with open(os.path.join(member_dir, rel), encoding="utf-8", errors="replace") as f:
            texts[rel] = f.read()
        c.module_of[rel] = location_module(rel)
    # #[path] overrides (the path is relative to the declaring file's directory)
    for rel in c.files:
        no_comments = strip_source(texts[rel], keep_strings=True)
        for m in PATH_ATTR.finditer(no_comments):
            target_file = os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1))).replace(os.sep, "/")
            if target_file in c.module_of:
                tgt, mod = c.module_of[rel]
                c.module_of[target_file] = (tgt, mod + (m.group(2),))
    for rel in c.files:
        key = c.module_of[rel]
        if key in c.file_of and not (rel == "src/lib.rs"):
            continue  # src/lib.rs wins the root over src/main.rs
        c.file_of[key] = rel
    for rel in c.files:
        c.scans[rel] = scan_file(strip_source(texts[rel]))
    # files never declared by a `mod` (only a sanity check of the module mapping)
    declared = set()
    for rel, scan in c.scans.items():
        tgt, mod = c.module_of[rel]
        for ctx, name, inline_decl in scan.mods:
            declared.add((tgt, mod + ctx + (name,)))
    c.undeclared = [rel for rel in c.files if c.module_of[rel][1] and c.module_of[rel] not in declared]
    return c


def resolve(c, rel, absolute, follow_reexports):
    """Longest module prefix of `absolute` that is a file; optionally chase `pub use`."""
    tgt = c.module_of[rel][0]
    for _ in range(8):  # bounded re-export chasing
        for k in range(len(absolute), -1, -1):
            key = (tgt, tuple(absolute[:k]))
            if key in c.file_of:
                break
        g = c.file_of[key]
        if k == 0 and tgt == "lib" and rel == "src/main.rs":
            g = rel
        if not follow_reexports or k >= len(absolute):
            return g
        name = absolute[k]
        nxt = c.reexport_index.get((g, tuple(absolute[:k]), name))
        if nxt is None:
            return g
        absolute = list(nxt) + list(absolute[k + 1:])
    return g


def absolutise(segs, cur, children, file_ctx_mod):
    """Module path for a path starting with crate/self/super (or a child module)."""
    segs = [s for s in segs if s != "*"]
    head = segs[0]
    if head in ("crate", "$crate"):
        out, rest = [], segs[1:]
    elif head in ("self", "super"):
        out, rest = list(cur), segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                if not out:
                    return None
                out.pop()
            rest = rest[1:]
    elif head in children:
        out, rest = list(cur), segs
    else:
        return None
    rest = [s for s in rest if s != "self"]
    return out + rest


def analyse_crate(c, ws_libs, relative, follow_reexports):
    # index of `pub use` re-exports: (file, module, name) -> absolute target path
    c.reexport_index = {}
    child_names = {}
    for rel, scan in c.scans.items():
        mod = c.module_of[rel][1]
        kids = defaultdict(set)
        for ctx, name, _ in scan.mods:
            kids[ctx].add(name)
        child_names[rel] = kids
    for rel, scan in c.scans.items():
        mod = c.module_of[rel][1]
        for ctx, name, segs in scan.reexports:
            cur = mod + ctx
            absolute = absolutise(segs, cur, child_names[rel][ctx], mod)
            if absolute is not None and not ctx:
                c.reexport_index[(rel, mod, name)] = absolute
    for rel, scan in c.scans.items():
        mod = c.module_of[rel][1]
        kids = child_names[rel]
        all_kids = set().union(*kids.values()) if kids else set()
        shadowed = {bound for bound, root in scan.bindings if bound != root}
        for ctx, segs, line, is_use, text in scan.refs:
            head = segs[0]
            if head == "::":
                if len(segs) > 1 and segs[1] in ws_libs:
                    c.crate_refs[segs[1]].add(rel)
                continue
            if head in ("crate", "$crate", "self", "super") or (relative and head in kids[ctx]):
                absolute = absolutise(segs, mod + ctx, kids[ctx] if relative else set(), mod)
                if absolute is None:
                    continue
                g = resolve(c, rel, absolute, follow_reexports)
                if g != rel:
                    c.edges[(rel, g)].append((line, text))
                continue
            # a child module `mod store;` or a binding `use crate::x::store;` shadows
            # the crate name in this file
            if head in ws_libs and head != c.lib_name and head not in all_kids \
                    and head not in shadowed:
                c.crate_refs[head].add(rel)


# ---------------------------------------------------------------- graph


def tarjan(nodes, succ):
    """Strongly connected components (iterative Tarjan)."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = 0
    for v0 in nodes:
        if v0 in index:
            continue
        work = [(v0, iter(succ.get(v0, ())))]
        index[v0] = low[v0] = counter
        counter += 1
        stack.append(v0)
        on.add(v0)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
    return comps


def dot_id(s):
    return '"' + s.replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Caveats: macros are not expanded; glob imports and re-exports through "
        "lib.rs point at lib.rs (unless --follow-reexports); unqualified `child::x` "
        "paths are ignored unless --relative; #[path] is honoured only on file-level "
        "`mod x;` declarations.",
    )
    ap.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                    help="workspace root (default: the parent of scripts/)")
    ap.add_argument("--no-tests", action="store_true",
                    help="drop files named *tests.rs, *_tests.rs or *testing.rs")
    ap.add_argument("--dot", metavar="FILE", help="write the file graph in Graphviz dot format")
    ap.add_argument("--edges", action="store_true",
                    help="under each circle, list its edges with the first line that makes each")
    ap.add_argument("--relative", action="store_true",
                    help="also count paths that start with a child module name (`use error::Error;` "
                    "in lib.rs), which rustc resolves relative to the current module")
    ap.add_argument("--follow-reexports", action="store_true",
                    help="send `crate::Name` to the file a top-level `pub use` re-exports it from")
    args = ap.parse_args()

    root = os.path.normpath(os.path.abspath(args.root))
    members = workspace_members(root)
    crates = [load_crate(root, d) for d in members]
    ws_libs = {c.lib_name: c for c in crates}
    pkg_to_lib = {c.package: c.lib_name for c in crates}

    total = 0
    dot_nodes, dot_edges = [], []
    print(f"workspace {root}: {len(crates)} members")
    for c in crates:
        analyse_crate(c, ws_libs, args.relative, args.follow_reexports)
        files = [f for f in c.files if not (args.no_tests and is_test_file(f))]
        keep = set(files)
        succ = defaultdict(list)
        nedges = 0
        for (f, g) in sorted(c.edges):
            if f in keep and g in keep:
                succ[f].append(g)
                nedges += 1
        comps = [comp for comp in tarjan(files, succ) if len(comp) > 1]
        comps.sort(key=lambda comp: (-len(comp), comp))
        total += len(comps)
        dropped = len(c.files) - len(files)
        extra = f", {dropped} test files dropped" if dropped else ""
        print(f"\n{c.package} ({c.rel}): {len(files)} .rs files{extra}, {nedges} file edges, "
              f"{len(comps)} import circle{'s' if len(comps) != 1 else ''}")
        for k, comp in enumerate(comps, 1):
            print(f"  circle {k} ({len(comp)} files): {', '.join(comp)}")
            if args.edges:
                members_set = set(comp)
                for f in comp:
                    for g in succ[f]:
                        if g in members_set:
                            line, text = c.edges[(f, g)][0]
                            more = len(c.edges[(f, g)]) - 1
                            tail = f" (+{more} more)" if more else ""
                            print(f"      {f} -> {g}   {f}:{line} {text}{tail}")
        undeclared = [f for f in c.undeclared if f in keep]
        if undeclared:
            print(f"  note: not declared by any `mod`: {', '.join(undeclared)}")
        in_circle = {f for comp in comps for f in comp}
        prefix = c.rel if c.rel != "." else "."
        for f in files:
            attrs = ' color=red fontcolor=red' if f in in_circle else ""
            dot_nodes.append((c.package, f"{prefix}/{f}", f[4:], attrs))
        for f in files:
            for g in succ[f]:
                red = ' color=red' if f in in_circle and g in in_circle else ""
                dot_edges.append((f"{prefix}/{f}", f"{prefix}/{g}", red))
    print(f"\nimport circles: {total}")

    # crate-level table
    print("\ncrate dependencies (workspace crates only; declared = Cargo.toml [dependencies]):")
    rows = []
    for c in crates:
        declared = sorted(pkg_to_lib[p] for p in c.deps if p in pkg_to_lib and p != c.package)
        refs = {k: v for k, v in c.crate_refs.items() if k != c.lib_name}
        if args.no_tests:
            refs = {k: {f for f in v if not is_test_file(f)} for k, v in refs.items()}
            refs = {k: v for k, v in refs.items() if v}
        used = [f"{d}({len(refs[d])})" for d in declared if d in refs]
        unused = [d for d in declared if d not in refs]
        undeclared = [f"{d}({len(refs[d])})" for d in sorted(refs) if d not in declared]
        rows.append((c.package, ", ".join(used) or "-", ", ".join(unused) or "-", ", ".join(undeclared) or "-"))
    head = ("crate", "references (files)", "declared, unreferenced", "referenced, not in [dependencies]")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        print("  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    for c in crates:
        refs = {k: v for k, v in c.crate_refs.items() if k != c.lib_name}
        declared = {pkg_to_lib[p] for p in c.deps if p in pkg_to_lib}
        for d in sorted(set(refs) - declared):
            files = sorted(refs[d])
            if args.no_tests:
                files = [f for f in files if not is_test_file(f)]
            if files:
                print(f"  {c.package} -> {d} without a [dependencies] entry, in: {', '.join(files)}")

    if args.dot:
        with open(args.dot, "w") as f:
            f.write("digraph imports {\n  rankdir=LR;\n  node [shape=box fontsize=10];\n")
            by_crate = defaultdict(list)
            for crate, node, label, attrs in dot_nodes:
                by_crate[crate].append((node, label, attrs))
            for k, (crate, nodes) in enumerate(by_crate.items()):
                f.write(f"  subgraph cluster_{k} {{\n    label={dot_id(crate)};\n")
                for node, label, attrs in nodes:
                    f.write(f"    {dot_id(node)} [label={dot_id(label)}{attrs}];\n")
                f.write("  }\n")
            for a, b, attrs in dot_edges:
                f.write(f"  {dot_id(a)} -> {dot_id(b)}{' [' + attrs.strip() + ']' if attrs else ''};\n")
            f.write("}\n")
        print(f"\nwrote {args.dot}")


if __name__ == "__main__":
    sys.exit(main())
