"""editor_syntax.py: the editor syntax files in docs/editors/ are in step with the language.

The words the scanner reserves (grammar/nn.l's keyword tables) and the names the compiler's tables
know (layers in compiler/sema_layers.c, losses and metrics in compiler/sema.c, optimizers,
samplers, schedules and data sources in compiler/sema_train.c, priors in compiler/sema_priors.c)
must each be highlighted, in the same class, by the TextMate grammar (nn.tmLanguage.json) and by
the Vim syntax (nn.vim); and every word either file highlights must be one the compiler knows
(a quoted name in compiler/ or a scanner keyword), so a removed name does not linger.  The
grammar's regular expressions compile.  Where Vim is installed, with docs/editors/vim on its
runtimepath it takes a .nn file for an nn one and gives a keyword, a layer, a loss, a comment, a
string and a number their groups.
Standard library only.  Usage: editor_syntax.py (from the source tree's root)."""
import json
import re
import shutil
import subprocess
import sys
import tempfile

fails = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails.append(what)


src = {f: open(f).read() for f in ("grammar/nn.l", "compiler/sema_layers.c", "compiler/sema.c", "compiler/sema_train.c",
                                   "compiler/sema_priors.c")}


def table(text, name):
    m = re.search(name + r"\[\] = \{(.*?)\};", text, re.S)
    return re.findall(r'"([a-z_0-9]+)"', m.group(1))


lex = src["grammar/nn.l"]
want = {
    "keyword": set(re.findall(r'\{"([a-z_]+)", [A-Z_]+\}', lex.split("train_kw")[0].split("global_kw")[1])),
    "train_keyword": set(re.findall(r'\{"([a-z_]+)", [A-Z_]+\}', lex.split("train_kw")[1].split("};")[0])),
    "layer": set(re.findall(r'^\s*\{"([a-z0-9_]+)", L_[A-Z_]+', src["compiler/sema_layers.c"], re.M)),
    "loss": set(re.findall(r'\{"([a-z_]+)", (?:LOSS|METRIC)_[A-Z_]+, NULL\}', src["compiler/sema.c"])),
    "train_function": set(table(src["compiler/sema_train.c"], r"static const char \*const names")
                          + re.findall(r'\{"([a-z_]+)", SCH_', src["compiler/sema_train.c"])
                          + table(src["compiler/sema_train.c"], r"static const char \*const sources")
                          + re.findall(r'\{"([a-z_]+)", PRIOR_', src["compiler/sema_priors.c"])),
}
want["train_function"] |= {"hmc", "nuts", "sgld"}
want["train_function"].discard("nesterov")  # (an option of sgd, named only to say so)
known = set(re.findall(r'"([a-z_0-9]+)"', " ".join(open(f).read() for f in
                                                   __import__("glob").glob("compiler/*.c") + ["grammar/nn.l", "grammar/nn.y"])))
known |= {"f32", "class", "true", "false"}

g = json.load(open("docs/editors/vscode/syntaxes/nn.tmLanguage.json"))
tm = {}
for key, rule in g["repository"].items():
    m = re.fullmatch(r"\\b\((.*)\)\\b", rule.get("match", ""))
    if m:
        tm[key] = set(m.group(1).split("|"))
    for k in ("match", "begin", "end"):
        if k in rule:
            try:
                re.compile(rule[k])
            except re.error as e:
                check(False, f"nn.tmLanguage.json: {key}.{k} compiles ({e})")
vim_groups = {"keyword": "nnKeyword", "train_keyword": "nnTrainKeyword", "layer": "nnLayer", "loss": "nnLoss",
              "train_function": "nnTrainFunction", "constant": "nnConstant", "type": "nnType"}
vim = {}
for line in open("docs/editors/vim/syntax/nn.vim"):
    p = line.split()
    if len(p) > 2 and p[0] == "syn" and p[1] == "keyword":
        vim.setdefault(p[2], set()).update(p[3:])

for cls, words in want.items():
    check(words <= tm.get(cls, set()), f"TextMate {cls}: every {cls.replace('_', ' ')} of the compiler ({sorted(words - tm.get(cls, set()))} missing)")
    v = vim.get(vim_groups[cls], set())
    check(words <= v, f"Vim {vim_groups[cls]}: every {cls.replace('_', ' ')} of the compiler ({sorted(words - v)} missing)")
for cls in vim_groups:
    a, b = tm.get(cls, set()), vim.get(vim_groups[cls], set())
    check(a == b, f"TextMate and Vim agree on {cls} ({sorted(a ^ b)} differ)")
    check(a <= known, f"{cls}: every highlighted word is one the compiler knows ({sorted(a - known)} unknown)")

vim_bin = shutil.which("vim")
if vim_bin:
    model = """model m
# a comment
input  x : f32[4]
target y : class[3]
h      = x -> dense(8) -> relu
loss   cross_entropy(h, y)
train  { data csv("d.csv") batch 32 optimizer adam(lr = 1e-3) }
"""
    with tempfile.TemporaryDirectory() as d:
        open(f"{d}/m.nn", "w").write(model)
        probes = {(1, 1): "nnKeyword", (2, 3): "nnComment", (3, 12): "nnType", (5, 15): "nnLayer", (6, 8): "nnLoss",
                  (7, 10): "nnTrainKeyword", (7, 15): "nnTrainFunction", (7, 19): "nnString", (7, 28): "nnTrainKeyword", (7, 34): "nnNumber",
                  (7, 47): "nnTrainFunction"}
        expr = " . ' ' . ".join(f"synIDattr(synID({l}, {c}, 1), 'name')" for l, c in probes)
        r = subprocess.run([vim_bin, "-Nu", "NONE", "-i", "NONE", "-es", "--cmd", "set rtp^=docs/editors/vim", "--cmd", "filetype on",
                            "--cmd", "syntax on", "-c", f"redir! > {d}/out", "-c", "silent echo &filetype", "-c", f"silent echo {expr}", "-c", "redir END", "-c", "qa!", f"{d}/m.nn"],
                           capture_output=True, text=True, timeout=60)
        got = open(f"{d}/out").read().split() if r.returncode == 0 else []
        check(got == ["nn"] + list(probes.values()), f"Vim, with docs/editors/vim on its runtimepath, detects a .nn file and highlights it as expected ({got}; status {r.returncode} {r.stderr[-200:]})")
else:
    print("(no vim: the Vim file's loading is not checked here)")
if fails:
    print(f"{len(fails)} check(s) failed")
    sys.exit(1)
print("all checks passed")
