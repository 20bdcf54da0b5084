"""The README's command lines still parse: every `nestbox ...` (or `$ nestbox ...`) in
its code blocks is run with `--help` put in front of its first `--` (or at its end).
getopt reads every option before it, so an option the verb does not know, one missing
its value or a value the verb refuses fails the test, and the manual printed is that
of the verb the line names; nothing is run for real. A shell variable set in the same
code block ($B) is expanded first."""
import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT, run

README = ROOT / "README.md"


def code_blocks(text):
    """The README's code blocks as lists of lines: fenced, or indented four spaces."""
    blocks, cur, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if fenced:
                blocks.append(cur)
            cur, fenced = [], not fenced
        elif fenced:
            cur.append(line)
        elif line.startswith("    ") or (cur and not line.strip()):
            cur.append(line[4:])
        else:
            if cur:
                blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def verbs():
    out = run(["--help"]).stdout
    return set(re.findall(r"^  (\w+)\s", out.split("commands:", 1)[1], re.M))


def commands():
    """(the line, argv after `nestbox`, the output the README shows after it) of every
    command line outside the manuals (blocks that begin `usage:`)."""
    found = []
    known = verbs()
    for block in code_blocks(README.read_text()):
        if block and block[0].startswith("usage: "):
            continue
        env, i = {}, 0
        while i < len(block):
            line = block[i].strip()
            while line.endswith("\\") and i + 1 < len(block):  # a continued command
                i += 1
                line = line[:-1] + " " + block[i].strip()
            i += 1
            prompt = line.startswith("$ ")
            line = line[2:] if prompt else line
            m = re.fullmatch(r'(\w+)=(".*"|\'.*\'|\S*)', line)
            if prompt and m:
                env[m[1]] = shlex.split(m[2])[0] if m[2] else ""
                continue
            shown = []
            for rest in block[i:]:
                if rest.startswith("$ "):
                    break
                shown.append(rest)
            # The nestbox part of a pipeline or a list (`cd x && nestbox ...`, `... | nestbox run -`).
            for part in re.split(r"\s(?:\|\||&&|\||;)\s", line):
                part = part.strip()
                if not part.startswith("nestbox ") and part != "nestbox":
                    continue
                try:
                    words = shlex.split(re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda v: env.get(v[1] or v[2], v[0]), part))
                except ValueError:
                    words = part.split()
                cut = next((k for k, w in enumerate(words) if w[:1] in "<>" or w[:2] in ("2>", "1>")), len(words))
                argv = words[1:cut]
                if not prompt and not (argv and (argv[0] in known or argv[0].startswith("-"))):
                    continue  # prose or output that happens to begin with the word
                found.append((line, argv, shown))
    return found


def option_values(*manual):
    """{--option: how many values it takes} from the option lines of the manuals."""
    n = {}
    for line in "\n".join(manual).splitlines():
        for m in re.finditer(r"(?:^\s+|, )(-\w|--[\w-]+)((?: [A-Z][A-Z0-9/_:.\[\]]*)*)(?=,|  |$)", line):
            n.setdefault(m[1], len(m[2].split()))
    return n


def probe_argv(argv):
    """argv with --help after its last option (and that option's values), before any
    `--`: everything up to it is parsed, for verbs whose options stop at the first
    operand (`run`, `cache`) as for those that take options anywhere (`test`)."""
    k = argv.index("--") if "--" in argv else len(argv)
    manuals = [run([argv[0], "--help"]).stdout] if argv and not argv[0].startswith("-") else []
    if argv[:1] == ["cache"]:
        manuals += [run(["cache", v, "--help"]).stdout for v in ("stats", "gc", "verify")]
    values = option_values(*manuals)
    at, j = 1 if manuals else 0, 1 if manuals else 0
    while j < k:
        w = argv[j]
        if w.startswith("-") and w != "-":
            name = w.split("=", 1)[0]
            j += 1 + (values.get(name, 0) if "=" not in w else 0)
            at = min(j, k)
        else:
            j += 1
    return argv[:at] + ["--help"] + argv[at:]


COMMANDS = commands()


def test_the_readme_has_command_lines():
    assert len(COMMANDS) >= 20, COMMANDS
    assert {"test", "cache", "run", "sandbox"} <= {a[0] for _, a, _ in COMMANDS if a}


@pytest.mark.parametrize("line,argv,shown", COMMANDS, ids=[c[0][:60] for c in COMMANDS])
def test_readme_command_parses(line, argv, shown):
    known = verbs()
    assert not argv or argv[0] in known or argv[0].startswith("-"), f"{line}: no such command {argv[0]!r}"
    probe = probe_argv(argv)
    p = run(probe, timeout=60)
    if p.returncode != 0 and shown and shown[0].startswith("nestbox: "):
        # An example of a usage error: it must still be the error the README shows.
        assert p.stderr.splitlines()[:1] == shown[:1], f"{line}\n  nestbox {shlex.join(probe)}\n  {p.stderr.strip()}"
        return
    assert p.returncode == 0, f"{line}\n  nestbox {shlex.join(probe)}\n  {p.stderr.strip()}"
    if argv and argv[0] in known:
        # The manual of the verb the line names (`cache` prints its sub-verb's).
        assert re.match(rf"usage: nestbox {argv[0]}\b", p.stdout), f"{line}\n{p.stdout[:200]}"


def manual_words(first, second):
    """The command whose --help a manual block shows, from its first two lines."""
    words = re.match(r"usage: nestbox ((?:\w+ ?)*)", first)[1].split()[:1]
    if words == ["cache"] and not second.strip().startswith("nestbox cache"):
        words.append(next(w for w in first.split()[3:] if not w.startswith("[")))  # one sub-verb's manual
    return words


def manuals():
    """(command words, the README's text) of every manual block: from `usage: nestbox
    VERB` up to the first `$ ` line of the block, if any."""
    found = []
    for block in code_blocks(README.read_text()):
        if block and block[0].startswith("usage: nestbox "):
            end = next((k for k, line in enumerate(block) if line.startswith("$ ")), len(block))
            found.append((manual_words(block[0], block[1] if len(block) > 1 else ""),
                          "\n".join(block[:end]).rstrip() + "\n"))
    return found


@pytest.mark.parametrize("words,text", manuals(), ids=[" ".join(m[0]) for m in manuals()])
def test_readme_manuals_are_the_help_text(words, text):
    """Each manual in the README is what `--help` prints today (tests/readme-manuals
    rewrites them from the binary)."""
    p = run([*words, "--help"])
    assert p.returncode == 0
    assert text == p.stdout.rstrip() + "\n"
