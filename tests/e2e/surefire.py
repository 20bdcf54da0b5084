"""The shape Maven Surefire's report schema (surefire-test-report-3.0.xsd) gives a
JUnit report with reruns, written out as rules: what Jenkins' JUnit plugin, GitLab and
Buildkite Test Analytics read. check() returns the list of violations (empty: valid).

    testsuites  > testsuite*
    testsuite   @name @tests required; > properties? testcase* system-out? system-err?
    properties  > property*            property @name @value required
    testcase    @name required (@classname @time @group optional);
                > (failure | error | skipped)? then
                  rerunFailure* rerunError*  (only after a failure or error)
                  flakyFailure* flakyError*  (only when there is none: it passed)
                  then system-out? system-err?
    failure, error   @message @type optional; text: the stack
    skipped          @message optional
    rerunFailure, rerunError, flakyFailure, flakyError
                @type required, @message optional; no text of their own;
                > stackTrace? system-out? system-err?, in that order, text only
"""
import xml.etree.ElementTree as ET

RESULTS = ("failure", "error", "skipped")
RERUNS = ("rerunFailure", "rerunError")
FLAKY = ("flakyFailure", "flakyError")
OUTPUTS = ("system-out", "system-err")
RERUN_CHILDREN = ("stackTrace", "system-out", "system-err")
TIME_CHARS = set("0123456789.,-E")


def _text_only(el, where, problems):
    if len(el):
        problems.append(f"{where}: <{el.tag}> holds elements, only text is allowed")


def _ordered(children, order, where, problems, once=(), group=lambda tag: tag):
    """children's tags (their group's) in the order of `order`; each may repeat unless
    its group is in once."""
    rank, last = -1, None
    seen = set()
    for c in children:
        g = group(c.tag)
        if g not in order:
            problems.append(f"{where}: <{c.tag}> is not allowed here")
            continue
        r = order.index(g)
        if r < rank:
            problems.append(f"{where}: <{c.tag}> comes after <{last}>")
        if g in once and g in seen:
            problems.append(f"{where}: more than one <{c.tag}>")
        seen.add(g)
        if r >= rank:
            rank, last = r, c.tag


def _check_rerun(el, where, problems):
    if el.get("type") is None:
        problems.append(f"{where}: <{el.tag}> lacks the required type attribute")
    if (el.text or "").strip():
        problems.append(f"{where}: <{el.tag}> has text of its own (the stack belongs in <stackTrace>)")
    _ordered(list(el), RERUN_CHILDREN, f"{where}/{el.tag}", problems, once=RERUN_CHILDREN)
    for c in el:
        _text_only(c, f"{where}/{el.tag}", problems)


def _check_testcase(tc, where, problems):
    if tc.get("name") is None:
        problems.append(f"{where}: <testcase> lacks the required name attribute")
    t = tc.get("time")
    if t is not None and (not t or not set(t) <= TIME_CHARS):
        problems.append(f"{where}: time={t!r} is not a number")
    where = f"{where}/testcase[{tc.get('name')}]"
    kids = list(tc)
    order = ("result",) + RERUNS + FLAKY + OUTPUTS
    _ordered(kids, order, where, problems, once=("result",) + OUTPUTS,
             group=lambda tag: "result" if tag in RESULTS else tag)
    results = [c for c in kids if c.tag in RESULTS]
    failed = any(c.tag in ("failure", "error") for c in results)
    for c in kids:
        if c.tag in RERUNS + FLAKY:
            _check_rerun(c, where, problems)
        if c.tag in RERUNS and not failed:
            problems.append(f"{where}: <{c.tag}> in a testcase that did not fail (that is <flaky...>)")
        if c.tag in FLAKY and failed:
            problems.append(f"{where}: <{c.tag}> in a testcase that failed (that is <rerun...>)")
        if c.tag in RESULTS or c.tag in OUTPUTS:
            _text_only(c, where, problems)


def _check_suite(s, where, problems):
    for a in ("name", "tests"):
        if s.get(a) is None:
            problems.append(f"{where}: <testsuite> lacks the required {a} attribute")
    where = f"{where}/testsuite[{s.get('name')}]"
    _ordered(list(s), ("properties", "testcase") + OUTPUTS, where, problems, once=("properties",) + OUTPUTS)
    for c in s:
        if c.tag == "properties":
            for p in c:
                if p.tag != "property" or p.get("name") is None or p.get("value") is None:
                    problems.append(f"{where}/properties: <{p.tag}> is not a <property name= value=>")
        elif c.tag == "testcase":
            _check_testcase(c, where, problems)


def check(xml_bytes):
    root = ET.fromstring(xml_bytes)
    problems = []
    suites = [root] if root.tag == "testsuite" else list(root)
    if root.tag not in ("testsuite", "testsuites"):
        return [f"root is <{root.tag}>, not <testsuites> or <testsuite>"]
    for s in suites:
        if s.tag != "testsuite":
            problems.append(f"testsuites: <{s.tag}> is not allowed here")
            continue
        _check_suite(s, "testsuites", problems)
    return problems
